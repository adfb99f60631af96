"""Subscriptions as the engine follows them: Trigger.dev run feeds and plain Electric shapes.

Every source has a stable `key` (where its position is stored), a `label` for humans, the
`shape` to request and the local table it fills.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx

from replica.errors import ShapeDefinitionError
from replica.protocol.messages import ChangeMessage
from replica.protocol.shape import SECRET_PARAMS, ShapeDefinition
from replica.sources.electric import ElectricSource
from replica.sources.packets import PacketFetcher
from replica.sources.taskrun import RunMapper
from replica.sources.trigger import TriggerConfig, batch_shape, run_shape, tag_shape
from replica.sources.where import check_where
from replica.tables import RUNS, RowChange, TableSpec


class RunSource:
    """A Trigger.dev run feed (one run, a tag set, or a batch) filling `runs`."""

    table_name = RUNS.name

    def __init__(
        self,
        kind: str,
        label: str,
        shape: ShapeDefinition,
        packets: PacketFetcher | None,
        *,
        keep_detached: bool | None = None,
    ) -> None:
        self.kind = kind
        self.keep_detached = keep_detached  # None: the table's policy (runs are kept)
        self.label = label
        self.shape = shape
        self.key = shape.key
        self._packets = packets
        self._mapper: RunMapper | None = None

    def table(self, schema: Mapping[str, Mapping[str, Any]] | None) -> TableSpec:
        return RUNS

    async def rows(
        self, changes: Sequence[ChangeMessage], table: TableSpec, lookup: Any
    ) -> list[RowChange]:
        if self._mapper is None:
            # Partial updates may need the stored packet types of a run.
            self._mapper = RunMapper(self._packets, lambda key: lookup(RUNS.name, key))
        return await self._mapper.map(changes)


def electric_url(url: str) -> str:
    """The shape endpoint of an Electric server: `http://host:3000` → `.../v1/shape`."""
    return _electric_endpoint(url)[0]


def _electric_endpoint(url: str) -> tuple[str, dict[str, str]]:
    """The shape endpoint of an Electric server and the query parameters its URL carries
    (e.g. Electric Cloud's `source_id`), sent with every request. A secret in the URL is
    refused: it would show in process arguments, `replica.toml` and shell history."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ShapeDefinitionError(f"--electric must be an http(s) URL, got {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/v1/shape"):
        path += "/v1/shape"
    extra: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in SECRET_PARAMS:
            raise ShapeDefinitionError(
                f"the --electric URL carries a secret ({name}=...): set it in the "
                "ELECTRIC_SECRET environment variable instead, where it stays out of "
                "process arguments, replica.toml and logs"
            )
        extra[name] = value
    return urlunsplit((parts.scheme, parts.netloc, path, "", "")), extra


def electric_source(
    url: str,
    table: str,
    *,
    where: str | None = None,
    params: Sequence[str] = (),
    columns: Sequence[str] | None = None,
    replica: str | None = None,
    secret: str | None = None,
    keep_detached: bool | None = None,
) -> ElectricSource:
    """A plain Electric shape, checked before any request is made."""
    if where is not None:
        where = check_where(where, params)
    elif params:
        raise ShapeDefinitionError("params given without a where clause")
    endpoint, extra = _electric_endpoint(url)
    shape = ShapeDefinition(
        endpoint,
        table=table,
        where=where,
        where_params=list(params) or None,
        columns=list(columns) if columns else None,
        replica=replica,  # type: ignore[arg-type]
        params={**extra, "secret": secret} if secret else extra,
    )
    return ElectricSource(shape, keep_detached=keep_detached)


def trigger_sources(
    client: httpx.AsyncClient,
    *,
    token: str,
    api_url: str,
    branch: str | None = None,
    tags: Sequence[str] = (),
    runs: Sequence[str] = (),
    batches: Sequence[str] = (),
    created_at: str | None = None,
    skip_columns: Sequence[str] = (),
    keep_detached: bool | None = None,
) -> list[RunSource]:
    """One source per `--tag` (a comma-separated value is one all-of subscription), run and
    batch. Offloaded payloads are fetched with `client`."""
    config = TriggerConfig(api_url=api_url, token=token, branch=branch)
    packets = PacketFetcher(client, config.api_url, config.headers())
    skip = [c for value in skip_columns for c in value.split(",") if c.strip()]
    sources = []
    for value in tags:
        names = [t.strip() for t in value.split(",") if t.strip()]
        shape = tag_shape(config, names, created_at=created_at, skip_columns=skip)
        sources.append(
            RunSource("tag", f"tag {','.join(names)}", shape, packets, keep_detached=keep_detached)
        )
    for run_id in runs:
        shape = run_shape(config, run_id.strip(), skip_columns=skip)
        sources.append(
            RunSource("run", f"run {run_id.strip()}", shape, packets, keep_detached=keep_detached)
        )
    for batch_id in batches:
        shape = batch_shape(config, batch_id.strip(), skip_columns=skip)
        sources.append(
            RunSource(
                "batch", f"batch {batch_id.strip()}", shape, packets, keep_detached=keep_detached
            )
        )
    return sources
