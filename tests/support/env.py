"""The environment of a `replica` subprocess (or example) pointed at an emulator."""

from __future__ import annotations

import os
from pathlib import Path

from replica.devserver import DevServer


def replica_env(server: DevServer, db: Path) -> dict[str, str]:
    """This process's environment with `server`'s key and URL and `db` set, as a user sets
    them after `replica dev-server` prints its key; other credentials are left out."""
    env = {
        **os.environ,
        "TRIGGER_SECRET_KEY": server.secret_key,
        "TRIGGER_API_URL": server.url,
        "REPLICA_DB": str(db),
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("TRIGGER_ACCESS_TOKEN", "TRIGGER_PREVIEW_BRANCH", "ELECTRIC_SECRET"):
        env.pop(name, None)
    return env
