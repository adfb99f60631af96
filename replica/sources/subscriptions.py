"""Subscriptions as the engine follows them: Trigger.dev run feeds and plain Electric shapes.

A `Feed` is a spec (what to follow) with what it takes to follow it: the Trigger.dev API and
token, or the Electric secret, and what becomes of rows that leave it. `sources_for` turns
feeds into engine sources; every source has a stable `key` (where its position is stored),
a `label` for humans, the `shape` to request and the local table it fills.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from replica.errors import ShapeDefinitionError
from replica.iso_time import iso, unix_time
from replica.protocol.client import HttpClient, open_client
from replica.protocol.messages import ChangeMessage
from replica.protocol.shape import ShapeDefinition
from replica.sources.electric import ElectricSource
from replica.sources.packets import PACKET_KEEPALIVE, PacketFetcher
from replica.sources.specs import ElectricSpec, FeedSpec, RunSpec
from replica.sources.taskrun import RunMapper
from replica.sources.trigger import TriggerConfig, native_window_start, window_seconds
from replica.tables import RUNS, RowChange, TableSpec

#: Seconds of slack before runs count as out of a moving window: the server buckets its
#: start to the minute, and the two clocks may be a little apart.
WINDOW_SLACK = 120.0

#: How long a finished run is still polled: late writes (its error, metadata, cost) arrive
#: in that grace period. The SDK's `subscribeToRun` stops 30 s after the run finished, too.
COMPLETION_GRACE = 30.0


class RunSource:
    """A Trigger.dev run feed (one run, a tag set, or a batch) filling `runs`.

    A feed of one run with `stops_on_completion` need not be polled once its run has
    finished: `finished_at` says since when (Unix time), as soon as a mapped page says so.
    """

    table_name = RUNS.name

    def __init__(
        self,
        kind: str,
        label: str,
        shape: ShapeDefinition,
        packets: PacketFetcher | None,
        *,
        keep_detached: bool | None = None,
        stops_on_completion: bool = False,
    ) -> None:
        self.kind = kind
        self.keep_detached = keep_detached  # None: the table's policy (runs are kept)
        self.label = label
        self.shape = shape
        self.key = shape.key
        self.stops_on_completion = stops_on_completion
        # Trigger.dev keeps a tag feed's created-at window only some days after making its
        # handle (see Engine's resume_within).
        self.windowed = kind == "tag"
        self._window = window_seconds(shape.params.get("createdAt"))
        self.finished_at: float | None = None
        self._packets = packets
        self._mapper: RunMapper | None = None

    def table(self, schema: Mapping[str, Mapping[str, Any]] | None) -> TableSpec:
        return RUNS

    async def rows(
        self,
        changes: Sequence[ChangeMessage],
        table: TableSpec,
        lookup: Any,
        pending: list[asyncio.Task[None]],
    ) -> list[RowChange]:
        """`runs` rows; their offloaded packets are downloading in the tasks added to
        `pending` (see `RunMapper.map_started`)."""
        if self._mapper is None:
            # Partial updates may need the stored packet types of a run.
            self._mapper = RunMapper(self._packets, lambda key: lookup(RUNS.name, key))
        rows = self._mapper.map_started(changes, pending)
        if self.stops_on_completion:
            for row in rows:
                finished = row.values.get("finished_at")
                if finished:
                    self.finished_at = unix_time(finished)
        return rows

    def done_polling_at(self) -> float | None:
        """When (Unix time) the feed may stop being polled; None while it must go on."""
        if self.finished_at is None:
            return None
        return self.finished_at + COMPLETION_GRACE

    def left_behind(self, handle: str | None, handle_since: float) -> tuple[str, str] | None:
        """Rows that left the shape without a delete: `(column, value)`, the rows whose
        column is below value. A tag feed of the native backend, whose window moves, leaves
        behind the runs created before the window's start (less `WINDOW_SLACK`)."""
        if self.kind != "tag":
            return None
        start = native_window_start(handle, handle_since, self._window, time.time())
        return None if start is None else ("created_at", iso(start - WINDOW_SLACK))


@dataclass(frozen=True)
class Feed:
    """A subscription to sync; make one with `replica.tag`, `run_feed`, `batch` or
    `electric` (or let `replica sync` make them from its options and `replica.toml`).

    `trigger` says how to reach Trigger.dev (required by its feeds), `secret` is the
    Electric source secret, `keep_detached` what becomes of rows that leave every shape
    (None: the table's policy). Feeds are immutable and can be reused across syncs.
    """

    spec: FeedSpec
    trigger: TriggerConfig | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    keep_detached: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.spec, ElectricSpec) and self.trigger is None:
            raise ShapeDefinitionError(f"{self.spec.label} needs a Trigger.dev API and token")

    @property
    def kind(self) -> str:
        """tag, run, batch or electric."""
        return self.spec.kind

    @property
    def label(self) -> str:
        """What the feed follows, for humans: `tag user:1234`."""
        return self.spec.label


@contextlib.asynccontextmanager
async def sync_clients(
    verify: ssl.SSLContext | None = None,
) -> AsyncIterator[tuple[HttpClient, HttpClient]]:
    """The HTTP clients of a sync, closed on exit: one for the shapes, and one for the
    offloaded packets, whose connections are kept warm between pages (`PACKET_KEEPALIVE`)."""
    async with (
        contextlib.aclosing(open_client(verify)) as shapes,
        contextlib.aclosing(open_client(verify, keepalive_expiry=PACKET_KEEPALIVE)) as packets,
    ):
        yield shapes, packets


def sources_for(
    feeds: Iterable[Feed],
    client: HttpClient | httpx.AsyncClient,
    *,
    packets: HttpClient | httpx.AsyncClient | None = None,
) -> list[RunSource | ElectricSource]:
    """The engine sources of `feeds`, in order. Offloaded packets are fetched with
    `packets` (default: `client`; `sync_clients` makes a pair that suits them), by
    one fetcher per Trigger.dev API and token (its concurrency bounds them all)."""
    fetchers: dict[TriggerConfig, PacketFetcher] = {}
    sources: list[RunSource | ElectricSource] = []
    for feed in feeds:
        spec = feed.spec
        if isinstance(spec, ElectricSpec):
            sources.append(ElectricSource(spec.shape(feed.secret), spec.label, feed.keep_detached))
            continue
        config = feed.trigger
        assert config is not None  # checked by Feed
        if config not in fetchers:
            fetchers[config] = PacketFetcher(packets or client, config.api_url, config.headers())
        sources.append(
            RunSource(
                spec.kind,
                spec.label,
                spec.shape(config),
                fetchers[config],
                keep_detached=feed.keep_detached,
                stops_on_completion=isinstance(spec, RunSpec) and spec.stop_on_completion,
            )
        )
    return sources
