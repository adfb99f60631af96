"""What `Replica.sync` follows: `replica.tag(...)`, `replica.run_feed(...)`,
`replica.batch(...)` and `replica.electric(...)`.

A feed is checked when it is made (bad ids, tags, where clauses and a missing token fail
here, before any request); it becomes engine sources when the sync starts.
"""

from __future__ import annotations

from collections.abc import Sequence

from replica.settings import default_api_url, default_branch, electric_secret, trigger_token
from replica.sources.specs import BatchSpec, ElectricSpec, RunSpec, TagSpec, TriggerSpec
from replica.sources.subscriptions import Feed
from replica.sources.trigger import TriggerConfig, check_skip_columns


def _trigger(
    spec: TriggerSpec,
    *,
    token: str | None,
    api_url: str | None,
    branch: str | None,
    keep_detached: bool | None = None,
) -> Feed:
    config = TriggerConfig(
        token or trigger_token(),
        api_url=api_url or default_api_url(),
        branch=branch if branch is not None else default_branch(),
    )
    return Feed(spec, trigger=config, keep_detached=keep_detached)


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
    spec = TagSpec(tags, created_at=created_at, skip_columns=check_skip_columns(skip_columns))
    return _trigger(spec, token=token, api_url=api_url, branch=branch, keep_detached=keep_detached)


def run_feed(
    run_id: str,
    *,
    stop_on_completion: bool = True,
    skip_columns: Sequence[str] = (),
    token: str | None = None,
    api_url: str | None = None,
    branch: str | None = None,
) -> Feed:
    """One run (`run_...`), no longer polled 30 s after it finished (as the SDK's
    `subscribeToRun`) unless `stop_on_completion=False`."""
    spec = RunSpec(
        run_id,
        skip_columns=check_skip_columns(skip_columns),
        stop_on_completion=stop_on_completion,
    )
    return _trigger(spec, token=token, api_url=api_url, branch=branch)


def batch(
    batch_id: str,
    *,
    skip_columns: Sequence[str] = (),
    token: str | None = None,
    api_url: str | None = None,
    branch: str | None = None,
) -> Feed:
    """The runs of a batch (`batch_...`)."""
    spec = BatchSpec(batch_id, skip_columns=check_skip_columns(skip_columns))
    return _trigger(spec, token=token, api_url=api_url, branch=branch)


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
    spec = ElectricSpec(
        url,
        table,
        where=where,
        params=tuple(params),
        columns=tuple(columns) if columns else None,
        replica=replica,  # type: ignore[arg-type]  # checked by the spec
    )
    return Feed(spec, secret=secret or electric_secret(), keep_detached=keep_detached)


__all__ = ["Feed", "batch", "electric", "run_feed", "tag"]
