"""Defaults read from the environment, one small function per setting."""

from __future__ import annotations

import os
from pathlib import Path

from replica.errors import ReplicaError

DEFAULT_API_URL = "https://api.trigger.dev"
DEFAULT_DB = "replica.db"


def default_db() -> str:
    """`REPLICA_DB`, else `./replica.db`."""
    return os.environ.get("REPLICA_DB") or DEFAULT_DB


def default_api_url() -> str:
    """`TRIGGER_API_URL`, else Trigger.dev's cloud API."""
    return os.environ.get("TRIGGER_API_URL") or DEFAULT_API_URL


def default_branch() -> str | None:
    """`TRIGGER_PREVIEW_BRANCH` (what the SDK reads), for preview-branch environments."""
    return os.environ.get("TRIGGER_PREVIEW_BRANCH") or None


def electric_secret() -> str | None:
    """`ELECTRIC_SECRET`: the API secret of an Electric server run in secure mode."""
    return os.environ.get("ELECTRIC_SECRET") or None


class MissingTokenError(ReplicaError):
    """No Trigger.dev token was given."""

    hint = (
        "set TRIGGER_SECRET_KEY (a secret key) or TRIGGER_ACCESS_TOKEN (a public access "
        "token), or pass token="
    )
    cli_hint = (
        "set TRIGGER_SECRET_KEY (a secret key) or TRIGGER_ACCESS_TOKEN (a public access "
        "token), or pass --token-file"
    )


def trigger_token(token_file: str | Path | None = None) -> str:
    """The Trigger.dev token: `--token-file`, else `TRIGGER_SECRET_KEY`, else
    `TRIGGER_ACCESS_TOKEN`. Tokens never come from the command line (it shows in `ps`)."""
    if token_file is not None:
        path = Path(token_file)
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise MissingTokenError(f"cannot read the token file {path}: {exc.strerror}") from None
        if not token:
            raise MissingTokenError(f"the token file {path} is empty")
        return token
    for name in ("TRIGGER_SECRET_KEY", "TRIGGER_ACCESS_TOKEN"):
        token = os.environ.get(name, "").strip()
        if token:
            return token
    raise MissingTokenError("no Trigger.dev token")
