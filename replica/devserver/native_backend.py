"""Trigger.dev's native realtime backend (webapp `nativeRealtimeClient.server.ts`).

The same three run feeds and the same Electric protocol as through the Electric proxy, with
the details of the webapp's own implementation (trigger-realtime.md §1.8, §1.11):

- handles `run-<id>` (stable) for one run, `runs_<createdAtFloorMs>_<seq>_<uuid8>` for tag
  feeds (the window is pinned in the handle), `batch_<batchId>_<seq>_<uuid8>` for batches;
  offsets `<updatedAtMs>_<seq>`, cursors `<seq>`;
- every non-live request is answered with the whole run set, ending with `up-to-date`:
  `offset=-1`, and also a catch-up request that carries a handle;
- full rows only: `insert` when a run enters the handle's working set, `update` when its
  `updatedAt` advanced; never `delete` nor `must-refetch`;
- a live poll holds until a run of its set advances, else `long_poll_timeout` ± jitter, then
  resolves the whole set again (the "backstop") and answers `up-to-date` with a new offset
  (a single-run poll echoes the client's offset, with a new cursor);
- tag feeds: on every request the pinned window start is clamped to `now - max age` and
  bucketed (`#clampCreatedAtFloor`), so older runs leave the set and stop being tracked,
  without a delete;
- tag and batch feeds hold at most `native_max_list_results` runs, the newest first.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from replica.devserver import native_wire as wire
from replica.devserver.responses import VARY
from replica.devserver.run_changes import RunChanges
from replica.devserver.run_data import parse_duration
from replica.devserver.runs import RunService
from replica.devserver.tables import Row
from replica.devserver.trigger_api import CURRENT_API_VERSION, live_slot, without_dequeued
from replica.devserver.ttl_cache import TtlCache

if TYPE_CHECKING:
    from replica.devserver.emulator import Emulator

#: Working sets kept at most (REALTIME_BACKEND_NATIVE_WORKING_SET_MAX_ENTRIES).
WORKING_SETS_MAX = 10_000


@dataclass(frozen=True)
class FeedRequest:
    """One request to a native feed, read as `#parseStreamRequest` reads it."""

    offset: str
    handle: str | None
    live: bool
    columns: tuple[str, ...]
    #: No `x-trigger-electric-version` header: answer with the legacy header names.
    legacy: bool
    #: `x-trigger-api-version` is not the current one: `DEQUEUED` is sent as `EXECUTING`.
    old_api: bool

    @classmethod
    def read(cls, request: Request, columns: tuple[str, ...]) -> FeedRequest:
        q = request.query_params
        return cls(
            offset=q.get("offset", "-1"),
            handle=q.get("handle") or q.get("shape_id") or None,
            live=q.get("live") == "true",
            columns=columns,
            legacy="x-trigger-electric-version" not in request.headers,
            old_api=request.headers.get("x-trigger-api-version") != CURRENT_API_VERSION,
        )

    @property
    def initial(self) -> bool:
        return self.offset == "-1" or not self.handle


@dataclass(frozen=True)
class RunSet:
    """Which runs a tag or batch feed holds: the filter the webapp resolves in ClickHouse."""

    environment_id: str
    tags: tuple[str, ...] = ()
    #: Tag feeds: runs created at or after this instant (ms); None for batches.
    floor_ms: int | None = None
    batch_id: str | None = None

    def matches(self, run: Row) -> bool:
        if run.get("runtimeEnvironmentId") != self.environment_id:
            return False
        if self.batch_id is not None:
            return run.get("batchId") == self.batch_id
        tags = RunService.tags_of(run)
        if not all(t in tags for t in self.tags):
            return False
        return self.floor_ms is None or wire.millis(str(run["createdAt"])) >= self.floor_ms


@dataclass
class WorkingSet:
    """What a handle's client holds: run id -> last `updatedAt` sent (ms), and the position
    in the run change feed up to which it has been told (the webapp's replay cursor)."""

    seen: dict[str, int]
    position: int


Change = tuple[Row, wire.Operation]


def diff(
    rows: Iterable[Row], seen: dict[str, int] | None, floor_ms: int
) -> tuple[list[Change], int, dict[str, int]]:
    """`#diffRows`: (changes, newest `updatedAt` incl. the offset's, rows now tracked).

    New to the working set -> insert; advanced -> update. Without a working set (forgotten
    or never known), every row newer than the client's offset is an update.
    """
    changes: list[Change] = []
    touched: dict[str, int] = {}
    newest = floor_ms
    for row in rows:
        run_id, updated = str(row["id"]), wire.millis(str(row["updatedAt"]))
        touched[run_id] = updated
        newest = max(newest, updated)
        if seen is None:
            if updated > floor_ms:
                changes.append((row, "update"))
        elif run_id not in seen:
            changes.append((row, "insert"))
        elif updated > seen[run_id]:
            changes.append((row, "update"))
    return changes, newest, touched


class NativeBackend:
    """Serves the run feeds the way the webapp's native backend does."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.config = emu.config
        self.changes = RunChanges(emu.db, emu.runs.table, emu.registry)
        self.working_sets: TtlCache[WorkingSet] = TtlCache(
            emu.clock, emu.config.native_working_set_ttl, WORKING_SETS_MAX
        )
        self._seq = 0

    # -- tokens -------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _unique_suffix(self) -> str:
        return f"{self._next_seq()}_{uuid.uuid4().hex[:8]}"

    def _hold(self) -> float:
        """The live-poll hold: the timeout ± the jitter ratio (`#jitteredTimeout`)."""
        ratio = self.config.native_live_poll_jitter
        return self.config.long_poll_timeout * (1 - ratio + random.random() * 2 * ratio)

    # -- tag windows ----------------------------------------------------------------------

    def _bucket(self, ms: int) -> int:
        bucket = int(self.config.created_at_bucket * 1000)
        return ms // bucket * bucket if bucket > 0 else ms

    def _max_age_floor(self) -> int:
        return self.emu.clock.millis() - int(self.config.created_at_max_age * 1000)

    def _initial_floor(self, created_at: str | None) -> int:
        """`#computeCreatedAtFilter`: now - createdAt (default 24h), capped by the max age;
        an unparsable duration falls back to the max age; then bucketed down."""
        floor = self._max_age_floor()
        seconds = parse_duration(created_at if created_at is not None else "24h")
        if seconds is None:
            return self._bucket(floor)
        return self._bucket(max(self.emu.clock.millis() - int(seconds * 1000), floor))

    def _clamped_floor(self, handle: str, created_at: str | None) -> int:
        """`#clampCreatedAtFloor`: the handle's pinned start, moved up to now - max age.
        A handle that pins no window gets a fresh one (`#filterMsFromHandle`)."""
        parts = handle.split("_")
        try:
            pinned = int(parts[1]) if parts[0] == "runs" and len(parts) > 1 else 0
        except ValueError:
            pinned = 0
        if pinned <= 0:
            return self._initial_floor(created_at)
        return self._bucket(max(pinned, self._max_age_floor()))

    # -- feeds ----------------------------------------------------------------------------

    async def stream_run(self, request: Request, columns: tuple[str, ...], run_id: str) -> Response:
        """`streamRun`: one run, by internal id."""
        feed = FeedRequest.read(request, columns)
        if feed.initial or feed.handle is None:
            return self._run_snapshot(feed, run_id, f"run-{run_id}")
        if feed.live:
            with live_slot(request):
                return await self._run_live(feed, run_id, feed.handle)
        return self._run_snapshot(feed, run_id, feed.handle)

    async def stream_runs(
        self, request: Request, columns: tuple[str, ...], tags: list[str]
    ) -> Response:
        """`streamRuns`: the runs with all `tags`, created inside the (moving) window."""
        feed = FeedRequest.read(request, columns)
        created_at = request.query_params.get("createdAt")
        env = self.emu.environment_id
        if feed.initial or feed.handle is None:
            floor = self._initial_floor(created_at)
            run_set = RunSet(env, tuple(tags), floor_ms=floor)
            return self._set_snapshot(feed, run_set, f"runs_{floor}_{self._unique_suffix()}")
        handle = feed.handle

        def window() -> RunSet:
            return RunSet(env, tuple(tags), floor_ms=self._clamped_floor(handle, created_at))

        if feed.live:
            with live_slot(request):
                return await self._set_live(feed, window, handle)
        return self._set_snapshot(feed, window(), handle)

    async def stream_batch(
        self, request: Request, columns: tuple[str, ...], batch_id: str
    ) -> Response:
        """`streamBatch`: the runs of a batch (internal id), no window."""
        feed = FeedRequest.read(request, columns)
        run_set = RunSet(self.emu.environment_id, batch_id=batch_id)
        if not feed.initial and feed.handle is not None and feed.live:
            with live_slot(request):
                return await self._set_live(feed, lambda: run_set, feed.handle)
        # A handle per connection, never derived from the batch alone: working sets are
        # kept per handle, and a shared one would let one client's poll hide rows from another.
        handle = feed.handle or f"batch_{batch_id}_{self._unique_suffix()}"
        return self._set_snapshot(feed, run_set, handle)

    # -- one run ----------------------------------------------------------------------------

    def _current_run(self, run_id: str) -> Row | None:
        run = self.emu.runs.get(run_id)
        if run is None or run.get("runtimeEnvironmentId") != self.emu.environment_id:
            return None
        return run

    def _run_snapshot(self, feed: FeedRequest, run_id: str, handle: str) -> Response:
        """The run as an insert then `up-to-date`; a missing run is empty at offset `0_0`."""
        run = self._current_run(run_id)
        if run is None:
            return self._respond(feed, [], "0_0", handle, schema=True)
        offset = wire.encode_offset(wire.millis(str(run["updatedAt"])), self._next_seq())
        return self._respond(feed, [(run, "insert")], offset, handle, schema=True)

    async def _run_live(self, feed: FeedRequest, run_id: str, handle: str) -> Response:
        """An update once the run's `updatedAt` passes the client's offset, else (after the
        hold) `up-to-date` with the client's own offset and a new cursor."""
        last_seen = wire.offset_millis(feed.offset)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._hold()
        while True:
            position = self.changes.position
            run = self._current_run(run_id)
            updated = wire.millis(str(run["updatedAt"])) if run is not None else 0
            if run is not None and updated > last_seen:
                return self._emit(feed, handle, [(run, "update")], updated)
            remaining = deadline - loop.time()
            if remaining <= 0 or self.emu.closing:
                seq = self._next_seq()
                return self._respond(feed, [], feed.offset, handle, cursor=seq)
            await self.changes.wait(position, remaining)

    # -- run sets ---------------------------------------------------------------------------

    def _resolve(self, run_set: RunSet) -> list[Row]:
        """The set's runs, newest first, capped (ClickHouse `listRunIds` + hydrate)."""
        runs = [r for r in self.emu.runs.all() if run_set.matches(r)]
        runs.sort(key=lambda r: (wire.millis(str(r["createdAt"])), str(r["id"])), reverse=True)
        return runs[: self.config.native_max_list_results]

    def _full_resolve(
        self, run_set: RunSet, seen: dict[str, int] | None, floor_ms: int, handle: str
    ) -> tuple[list[Change], int, WorkingSet]:
        """Resolve the whole set and diff it; the working set becomes exactly the set, so the
        runs that left it are no longer tracked (and no delete is sent for them)."""
        position = self.changes.position
        changes, newest, touched = diff(self._resolve(run_set), seen, floor_ms)
        state = WorkingSet(touched, position)
        self.working_sets.set(handle, state)
        return changes, newest, state

    def _set_snapshot(self, feed: FeedRequest, run_set: RunSet, handle: str) -> Response:
        """`#runSetSnapshotResponse`: every run as an insert; seeds the working set."""
        inserts, newest, _ = self._full_resolve(run_set, {}, 0, handle)
        offset = wire.encode_offset(newest, self._next_seq())
        return self._respond(feed, inserts, offset, handle, schema=True)

    async def _set_live(
        self, feed: FeedRequest, window: Callable[[], RunSet], handle: str
    ) -> Response:
        """`#runSetLiveResponse`: send what changed in the set since the handle's last
        response as soon as there is something; after the hold, resolve the whole set.

        The webapp fixes a poll's window when it starts, which differs from "now" by the
        hold at most; the emulator's clock can jump during a hold, so the window is read
        again on each wake-up, as the next poll would see it."""
        floor_ms = wire.offset_millis(feed.offset)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._hold()
        state = self.working_sets.get(handle)
        if state is None or self.changes.since(state.position) is None:
            # Nothing to diff against, or the gap is no longer replayable: resolve once
            # first, as the webapp does on a cold start ("cold-resolve").
            changes, newest, state = self._full_resolve(
                window(), None if state is None else state.seen, floor_ms, handle
            )
            if changes:
                return self._emit(feed, handle, changes, newest)
        while not self.emu.closing:
            replay = self.changes.since(state.position)
            if replay is None:
                break
            missed, end = replay
            if missed:
                run_set = window()
                matched = [run for run in missed if run_set.matches(run)]
                changes, newest, touched = diff(matched, state.seen, floor_ms)
                state = WorkingSet({**state.seen, **touched}, end)
                self.working_sets.set(handle, state)
                if changes:
                    return self._emit(feed, handle, changes, newest)
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await self.changes.wait(state.position, remaining)
        if self.emu.closing:
            return self._emit(feed, handle, [], floor_ms)
        changes, newest, _ = self._full_resolve(window(), state.seen, floor_ms, handle)
        return self._emit(feed, handle, changes, newest)

    # -- responses --------------------------------------------------------------------------

    def _emit(self, feed: FeedRequest, handle: str, changes: list[Change], newest: int) -> Response:
        """A live answer: the changes (maybe none) at offset `<newest>_<seq>`, cursor `<seq>`."""
        seq = self._next_seq()
        return self._respond(feed, changes, wire.encode_offset(newest, seq), handle, cursor=seq)

    def _respond(
        self,
        feed: FeedRequest,
        changes: list[Change],
        offset: str,
        handle: str,
        *,
        schema: bool = False,
        cursor: int | None = None,
    ) -> Response:
        """`#buildResponse`: the body, `no-store`, every header exposed, no etag."""
        body = wire.body(wire.change(run, feed.columns, op) for run, op in changes)
        if feed.old_api:
            body = without_dequeued(body)
        headers = {
            "content-type": "application/json",
            "cache-control": "no-store",
            "vary": VARY,
            "access-control-allow-origin": "*",
            "access-control-expose-headers": "*",
        }
        if feed.legacy:
            headers["electric-chunk-last-offset"] = offset
            headers["electric-shape-id"] = handle
        else:
            headers["electric-offset"] = offset
            headers["electric-handle"] = handle
        if cursor is not None:
            headers["electric-cursor"] = str(cursor)
        if schema:
            headers["electric-schema"] = wire.schema_header(feed.columns)
        return Response(body, 200, headers)
