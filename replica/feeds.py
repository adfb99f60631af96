"""What `Replica.sync` follows: `replica.tag(...)`, `replica.run_feed(...)`,
`replica.batch(...)` and `replica.electric(...)`.

A feed is checked when it is made (bad ids, tags, where clauses and a missing token fail
here, before any request); it becomes engine sources when the sync starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from replica.engine import Source
from replica.settings import default_api_url, default_branch, electric_secret, trigger_token
from replica.sources.subscriptions import electric_source, trigger_sources
from replica.sources.trigger import TriggerConfig, batch_shape, run_shape, tag_shape


@dataclass(frozen=True)
class Feed:
    """A subscription to sync in-process; make one with `tag`, `run_feed`, `batch` or
    `electric`."""

    kind: str
    options: dict[str, Any] = field(repr=False)
    label: str = ""

    def sources(self, client: httpx.AsyncClient) -> list[Source]:
        """The engine sources of this feed, sharing `client`."""
        if self.kind == "electric":
            return [electric_source(**self.options)]
        return list(trigger_sources(client, **self.options))


def _trigger(
    kind: str,
    value: Any,
    *,
    token: str | None,
    api_url: str | None,
    branch: str | None,
    skip_columns: Sequence[str],
    created_at: str | None = None,
    keep_detached: bool | None = None,
) -> Feed:
    token = token or trigger_token()
    api_url = api_url or default_api_url()
    branch = branch if branch is not None else default_branch()
    config = TriggerConfig(token, api_url=api_url, branch=branch)
    # Build the shape now so that bad input fails here, not in the middle of a sync.
    if kind == "tag":
        tag_shape(config, value, created_at=created_at, skip_columns=skip_columns)
        label, key = f"tag {','.join(value)}", "tags"
        value = [",".join(value)]
    elif kind == "run":
        run_shape(config, value, skip_columns=skip_columns)
        label, key, value = f"run {value}", "runs", [value]
    else:
        batch_shape(config, value, skip_columns=skip_columns)
        label, key, value = f"batch {value}", "batches", [value]
    options: dict[str, Any] = {
        "token": token,
        "api_url": api_url,
        "branch": branch,
        key: value,
        "created_at": created_at,
        "skip_columns": list(skip_columns),
        "keep_detached": keep_detached,
    }
    return Feed(kind, options, label)


def tag(
    *tags: str,
    created_at: str | None = None,
    skip_columns: Sequence[str] = (),
    token: str | None = None,
    api_url: str | None = None,
    branch: str | None = None,
    keep_detached: bool | None = None,
) -> Feed:
    """Runs carrying all of `tags` (Trigger.dev's tag feed), created within `created_at`.

    The token defaults to `TRIGGER_SECRET_KEY` / `TRIGGER_ACCESS_TOKEN`, the API to
    `TRIGGER_API_URL`."""
    return _trigger(
        "tag",
        list(tags),
        token=token,
        api_url=api_url,
        branch=branch,
        skip_columns=skip_columns,
        created_at=created_at,
        keep_detached=keep_detached,
    )


def run_feed(
    run_id: str,
    *,
    skip_columns: Sequence[str] = (),
    token: str | None = None,
    api_url: str | None = None,
    branch: str | None = None,
) -> Feed:
    """One run (`run_...`)."""
    return _trigger(
        "run", run_id, token=token, api_url=api_url, branch=branch, skip_columns=skip_columns
    )


def batch(
    batch_id: str,
    *,
    skip_columns: Sequence[str] = (),
    token: str | None = None,
    api_url: str | None = None,
    branch: str | None = None,
) -> Feed:
    """The runs of a batch (`batch_...`)."""
    return _trigger(
        "batch", batch_id, token=token, api_url=api_url, branch=branch, skip_columns=skip_columns
    )


def electric(
    url: str,
    table: str,
    *,
    where: str | None = None,
    params: Sequence[str] = (),
    columns: Sequence[str] | None = None,
    replica: str | None = None,
    secret: str | None = None,
    keep_detached: bool | None = None,
) -> Feed:
    """A plain Electric shape, materialised into a local table named after `table`."""
    options = {
        "url": url,
        "table": table,
        "where": where,
        "params": list(params),
        "columns": list(columns) if columns else None,
        "replica": replica,
        "secret": secret or electric_secret(),
        "keep_detached": keep_detached,
    }
    source = electric_source(**options)  # checks the where clause and params now
    return Feed("electric", options, source.label)


__all__ = ["Feed", "batch", "electric", "run_feed", "tag"]
