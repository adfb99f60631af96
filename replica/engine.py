"""The sync engine: many shape subscriptions in one process, one writer to the store.

Each subscription is an asyncio task following its shape with a `ShapeStream` (sharing one
HTTP client); every page goes to the store in a single writer thread, so SQLite work never
blocks the event loop and writes never interleave. A page whose rows wait for offloaded
packets lets the next page be read and mapped meanwhile (its downloads start too); pages are
still committed one at a time, in order, each once its rows are complete. Failures of one
subscription (bad data, refusals) are retried or reported in its status without disturbing
the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import httpx

from replica.errors import (
    ApplyError,
    CertificateError,
    MalformedResponseError,
    ProtocolError,
    ReplicaError,
    RetriesExhaustedError,
    UpstreamError,
)
from replica.iso_time import iso, now_iso, unix_time
from replica.notify.retention import Retention
from replica.protocol import (
    Batch,
    Position,
    ShapeDefinition,
    ShapeStream,
    StreamEvent,
    StreamOptions,
)
from replica.protocol.backoff import Backoff, BackoffTimer
from replica.protocol.client import HttpClient, as_http_client
from replica.protocol.deadline import within
from replica.protocol.messages import ChangeMessage
from replica.store import ShapeRecord, Store
from replica.store.database import connect
from replica.store.sql import ident, staged_table
from replica.tables import RowChange, TableSpec

log = logging.getLogger(__name__)

T = TypeVar("T")

Lookup = Callable[[str, Any], "Mapping[str, Any] | None"]


class Source(Protocol):
    """What the engine needs from a subscription (see `replica.sources`)."""

    key: str  # stable identity, used to find the stored position
    kind: str  # tag, run, batch, electric
    label: str  # for humans: "tag user:1234"
    shape: ShapeDefinition
    table_name: str  # the local table it fills
    #: What becomes of the table's rows that leave every shape: kept with `detached_at`
    #: (True), deleted (False), or the table's own policy (None).
    keep_detached: bool | None
    #: Whether the feed ends once `done_polling_at()` has passed (a finished run's feed).
    stops_on_completion: bool
    #: Whether the server keeps the shape's window (a tag feed's created-at instant) only for
    #: some days after making its handle: then an older position is not resumed.
    windowed: bool

    def table(self, schema: Mapping[str, Mapping[str, Any]] | None) -> TableSpec:
        """The local table this shape fills, given the wire schema (if known yet)."""
        ...

    async def rows(
        self,
        changes: Sequence[ChangeMessage],
        table: TableSpec,
        lookup: Lookup,
        pending: list[asyncio.Task[None]],
    ) -> list[RowChange]:
        """Wire changes as local row changes. Values that are still on their way (offloaded
        packets) are filled in by tasks added to `pending`: the rows are complete, and may
        be written, once those are done."""
        ...

    def done_polling_at(self) -> float | None:
        """When (Unix time) the feed may stop being polled, as far as the rows mapped so far
        tell; None while it must go on."""
        ...

    def left_behind(self, handle: str | None, handle_since: float) -> tuple[str, str] | None:
        """Rows that have left the shape though the server never said so: `(column, value)`
        names those whose column is below value; None if none can have."""
        ...


@dataclass
class ShapeProgress:
    """What the engine knows about one subscription while it runs (for feedback)."""

    label: str
    state: str = "initial"
    received: int = 0  # change messages received since start
    rows: int = 0
    started: float = field(default_factory=time.monotonic)
    error: str | None = None
    done: bool = False


#: A windowed feed (a Trigger.dev tag feed) whose handle was not used for longer than this
#: starts over with a fresh window. Trigger.dev keeps a handle's window two weeks after its
#: last use (fresh for one): once it forgets it, the shape silently becomes every run with
#: the tags, ever.
RESUME_WITHIN = 3 * 24 * 3600.0


#: With `once`, a shape whose requests keep failing (an unreachable upstream, bad data) is
#: given up after these retries, so that a `replica sync --once` in a script ends; a sync
#: that follows its shapes retries for as long as it runs.
ONCE_BACKOFF = Backoff(initial=0.5, maximum=4.0, max_retries=5)


class Engine:
    """Runs subscriptions against one store until they are up to date (`once`) or stopped.

    `store` must be a writer `Store`; the engine only touches it from its writer thread.
    A shape fails (and stops) when the upstream refuses it (4xx), its certificate cannot be
    verified, or, with `once`, when it keeps failing after `ONCE_BACKOFF`'s retries. A
    windowed feed (a tag feed) whose handle was not used for more than `resume_within`
    seconds starts over with a fresh window (rows stay until the new snapshot replaces
    them).
    `on_commit(last_seq)` is called on the event loop after each commit that logged changes
    (e.g. `Replica.notify_committed`, so same-process callbacks run at once); `retention`
    decides when the change log is pruned (default: `Retention()`, 7 days).
    """

    def __init__(
        self,
        store: Store,
        client: HttpClient | httpx.AsyncClient,
        *,
        once: bool = False,
        resume_within: float = RESUME_WITHIN,
        options: StreamOptions | None = None,
        retry: Backoff | None = None,
        on_commit: Callable[[int], None] | None = None,
        retention: Retention | None = None,
    ) -> None:
        self.store = store
        self.client = as_http_client(client)
        self.once = once
        self.resume_within = resume_within
        base = options or StreamOptions(backoff=ONCE_BACKOFF if once else Backoff())
        self.options = StreamOptions(**{**base.__dict__, "live": not once})
        self.retry = retry or (ONCE_BACKOFF if once else Backoff(initial=1.0, maximum=60.0))
        self.on_commit = on_commit
        #: Called on the event loop when a shape's state changes (e.g. it is live).
        self.on_state: Callable[[], None] | None = None
        self.retention = retention if retention is not None else Retention()
        self.progress: dict[str, ShapeProgress] = {}
        self.failed: dict[str, ReplicaError] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replica-writer")
        self._stopping = asyncio.Event()
        self._added = asyncio.Event()
        self._reader: sqlite3.Connection | None = None

    # -- running ----------------------------------------------------------------------

    async def run(
        self,
        sources: Iterable[Source],
        *,
        until_stopped: bool = False,
        keep_others: bool = True,
    ) -> bool:
        """Follow every source; return True if none failed.

        Returns when every subscription has ended (all up to date with `once`, or failed),
        or when `stop()` is called; with `until_stopped`, only `stop()` ends it (sources may
        come and go with `add`/`remove`). Without `keep_others`, shapes stored in the
        database that are not among `sources` are let go of first (see `remove`).
        """
        sources = list(sources)
        if not keep_others:
            await self._let_go_of_others({source.key for source in sources})
        for source in sources:
            self.add(source)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            while (self._tasks or until_stopped) and not self._stopping.is_set():
                added = asyncio.ensure_future(self._added.wait())
                done, _ = await asyncio.wait(
                    [*self._tasks.values(), stopping, added], return_when=asyncio.FIRST_COMPLETED
                )
                added.cancel()
                self._added.clear()
                for key, task in list(self._tasks.items()):
                    if task in done:
                        del self._tasks[key]
                        if not task.cancelled() and task.exception() is not None:
                            raise task.exception()  # type: ignore[misc]
        finally:
            stopping.cancel()
            await self.close()
        return not self.failed

    def add(self, source: Source) -> None:
        """Start following a source (ignored if one with the same key runs already)."""
        if source.key in self._tasks:
            return
        self.progress[source.key] = ShapeProgress(source.label)
        task = asyncio.create_task(self._follow(source), name=f"replica:{source.label}")
        self._tasks[source.key] = task
        self._added.set()

    async def remove(self, key: str) -> None:
        """Stop following a shape and let go of its rows."""
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        shape = await self._write(self.store.shape, key)
        if shape is not None:
            await self._write(self.store.remove_shape, shape.id)
        self.progress.pop(key, None)

    async def _let_go_of_others(self, keys: set[str]) -> None:
        for shape in await self._write(self.store.shapes):
            if shape.key not in keys:
                label = shape.definition.get("label", shape.key)
                log.info("no longer following %s: letting go of its rows", label)
                await self._write(self.store.remove_shape, shape.id)

    def stop(self) -> None:
        """Ask `run` to end: tasks are cancelled, the current write completes."""
        self._stopping.set()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Whatever the writer thread is doing commits or rolls back before we return.
        await asyncio.get_running_loop().run_in_executor(None, self._writer.shutdown, True)
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # -- one subscription -------------------------------------------------------------

    async def _follow(self, source: Source) -> None:
        progress = self.progress[source.key]
        timer = BackoffTimer(self.retry)
        record = await self._write(
            self.store.register_shape,
            source.key,
            kind=source.kind,
            target=source.table_name,
            definition={"label": source.label, "url": source.shape.key},
        )
        shape_id = record.id
        if source.stops_on_completion and record.state == "complete":
            # Its run finished (and its grace period passed) before: nothing more will come.
            progress.state, progress.done = "complete", True
            log.info("%s: complete; not polled again", source.label)
            return
        # Trigger.dev feeds fill `runs`; a plain Electric shape's table is made (or grown)
        # from the schema of its first reply, or is already known from an earlier run.
        table: TableSpec | None = self.store.tables.get(source.table_name)
        complete_at: float | None = None  # a finished run's feed ends then
        while True:
            record = await self._resumable(source, shape_id)
            handle_since = record.handle_since
            swept = 0.0  # when rows left behind were last looked for
            position = Position.from_dict(record.position) if record.position else Position()
            stream = ShapeStream(
                source.shape,
                self.client,
                position=position,
                options=self.options,
                on_event=lambda event, s=source: self._on_event(s, shape_id, event),
            )
            written = (record.handle, record.offset, time.monotonic())
            pages = stream.pages()
            # The page being applied and the next one, read ahead (see `_read_ahead`), with
            # the downloads their rows wait for.
            mapped: _Mapped | None = None
            pending: list[asyncio.Task[None]] = []
            ahead: asyncio.Task[_Mapped] | None = None
            ahead_pending: list[asyncio.Task[None]] = []
            try:
                while True:
                    try:
                        if ahead is None:
                            mapped, pending = None, []
                            page = await self._next_page(pages, complete_at)
                        else:
                            mapped = await ahead
                            ahead, page, pending = None, mapped.page, mapped.pending
                    except StopAsyncIteration:
                        break
                    except asyncio.TimeoutError:  # the finished run's grace period is over
                        await self._mark_complete(source, shape_id)
                        return
                    if time.monotonic() - swept > LEFT_BEHIND_EVERY and page.up_to_date:
                        swept = time.monotonic()
                        await self._let_go_of_left_behind(source, shape_id, page, handle_since)
                    if _keep_alive(page, written):
                        # Nothing moved: no transaction (idle shapes stay cheap). Only a
                        # shape recovering from a failed request has news: it is live again.
                        timer.reset()
                        await self._now_in(progress, shape_id, "live")
                        continue
                    if mapped is None:
                        mapped = await self._map_page(source, page, table, pending)
                    if mapped.pending and not page.up_to_date:
                        ahead_pending = []
                        ahead = asyncio.create_task(
                            self._read_ahead(
                                pages, source, mapped.table, complete_at, ahead_pending
                            )
                        )
                    table = await self._apply(source, shape_id, mapped)
                    if page.position.handle != written[0]:
                        handle_since = now_iso()
                    written = (page.position.handle, page.position.offset, time.monotonic())
                    if page.up_to_date:
                        timer.reset()
                        complete_at = source.done_polling_at()
                        if complete_at is not None and complete_at <= time.time():
                            await self._mark_complete(source, shape_id)
                            return
                        if self.once:
                            break
            except (MalformedResponseError, ApplyError, ProtocolError) as exc:
                if isinstance(exc, UpstreamError | CertificateError | RetriesExhaustedError):
                    await self._fail(source, shape_id, exc)  # retrying will not help
                    return
                if timer.exhausted:
                    gave_up = RetriesExhaustedError(
                        f"gave up after {timer.attempts} retries: {exc}",
                        url=getattr(exc, "url", None),
                    )
                    await self._fail(source, shape_id, gave_up)
                    return
                # Bad data or an unusable reply: nothing of the batch was written. Retry
                # from the last committed position after a pause.
                delay = timer.next_delay()
                await self._backing_off(source, shape_id, exc, delay)
                await asyncio.sleep(delay)
                continue
            finally:
                await _abandon(pending, ahead, ahead_pending)
                await pages.aclose()
            progress.done = True
            return

    @staticmethod
    async def _next_page(pages: AsyncIterator[Batch], deadline: float | None) -> Batch:
        """The stream's next page; `asyncio.TimeoutError` (the request in flight cancelled)
        once `deadline` (Unix time) has passed."""
        if deadline is None:
            return await anext(pages)
        return await within(anext(pages), max(0.0, deadline - time.time()))

    async def _let_go_of_left_behind(
        self, source: Source, shape_id: int, page: Batch, handle_since: str | None
    ) -> None:
        """Let go of rows that left the shape unannounced (runs that aged out of the native
        backend's moving window), so readers see them detached rather than stale."""
        since = unix_time(handle_since) if handle_since else time.time()
        behind = source.left_behind(page.position.handle, since)
        if behind is None:
            return
        gone = await self._write(self.store.let_go_older, shape_id, *behind)
        if gone:
            log.info("%s: %d row(s) left the window; let go of", source.label, gone)

    async def _resumable(self, source: Source, shape_id: int) -> ShapeRecord:
        """The shape as stored, its position forgotten first if it is too old to resume: a
        windowed feed whose handle was last used (made, or up to date) more than
        `resume_within` ago, which its server may have forgotten the window of."""
        record = await self._write(self.store.shape, source.key)
        assert record is not None
        used = [unix_time(t) for t in (record.handle_since, record.last_up_to_date) if t]
        stale = bool(used) and time.time() - max(used) > self.resume_within
        if source.windowed and record.handle and stale:
            log.info(
                "%s: its position was last used more than %s ago; starting over with a "
                "fresh window",
                source.label,
                _days(self.resume_within),
            )
            await self._write(self.store.forget_position, shape_id)
            record = await self._write(self.store.shape, source.key)
            assert record is not None
        return record

    async def _mark_complete(self, source: Source, shape_id: int) -> None:
        progress = self.progress[source.key]
        progress.state, progress.error, progress.done = "complete", None, True
        await self._write(self.store.set_status, shape_id, "complete")
        log.info("%s: the run finished; no longer polled", source.label)
        if self.on_state is not None:
            self.on_state()

    async def _read_ahead(
        self,
        pages: AsyncIterator[Batch],
        source: Source,
        table: TableSpec,
        deadline: float | None,
        pending: list[asyncio.Task[None]],
    ) -> _Mapped:
        """The stream's next page, mapped (its downloads started, their tasks in `pending`)
        while the current page waits for its packets: the request, the parsing and the
        mapping of one page overlap the downloads of the one before. One page at most is
        read ahead, and only inside a snapshot or catch-up (after a page that is not up to
        date), so a live shape's long-polls never start before what came before them is
        written. A failure here surfaces when the loop takes the page, after the current
        one is committed."""
        page = await self._next_page(pages, deadline)
        return await self._map_page(source, page, table, pending)

    async def _map_page(
        self,
        source: Source,
        page: Batch,
        table: TableSpec | None,
        pending: list[asyncio.Task[None]],
    ) -> _Mapped:
        """A page mapped for its table, the tasks still filling its rows in `pending`."""
        table = await self._table_for(source, page.position.schema, table)
        self.progress[source.key].received += len(page.changes)
        changes = await self._map(source, page.changes, table, pending)
        return _Mapped(page, table, changes, pending)

    async def _apply(self, source: Source, shape_id: int, mapped: _Mapped) -> TableSpec:
        """Commit a mapped page with its position once its rows are complete; the table in
        effect after it."""
        progress = self.progress[source.key]
        page = mapped.page
        if mapped.pending:
            await asyncio.gather(*mapped.pending)
        result = await self._write(
            self.store.apply,
            shape_id,
            mapped.changes,
            position=page.position.to_dict(),
            up_to_date=page.up_to_date,
            reset=page.reset,
        )
        progress.rows = result.rows
        if result.last_seq is not None:
            await self._committed(result.last_seq, result.changes)
        if page.up_to_date or page.reset:
            await self._now_in(progress, shape_id, "live" if page.up_to_date else "refetching")
        return mapped.table

    async def _now_in(self, progress: ShapeProgress, shape_id: int, state: str) -> None:
        """A page arrived and the shape is in `state`: recorded (error cleared) if new."""
        if state != progress.state:
            progress.state, progress.error = state, None
            await self._write(self.store.set_status, shape_id, state)
            if self.on_state is not None:
                self.on_state()

    async def _map(
        self,
        source: Source,
        wire: list[ChangeMessage],
        table: TableSpec,
        pending: list[asyncio.Task[None]],
    ) -> list[RowChange]:
        """Map a page's wire changes, emptying `wire` slice by slice as it goes: a page can
        hold thousands of rows, and each wire row is freed once its local row is made, so
        a page is never held in memory twice. Downloads the rows wait for go to `pending`;
        once some are under way, each slice lets them make progress before the next."""
        mapped: list[RowChange] = []
        while wire:
            piece = wire[:MAP_SLICE]
            del wire[:MAP_SLICE]
            mapped += await source.rows(piece, table, self._lookup, pending)
            if pending and wire:
                await asyncio.sleep(0)
        return mapped

    async def _table_for(
        self, source: Source, schema: Mapping[str, Any] | None, current: TableSpec | None
    ) -> TableSpec:
        """The table a page goes to: made, or grown, from the page's schema when it brings
        columns the table lacks; with the source's detach policy."""
        table = current
        if schema is not None:
            wanted = source.table(schema)
            if table is None or not set(wanted.column_names) <= set(table.column_names):
                table = await self._write(self.store.ensure_table, wanted)
        if table is None:
            raise MalformedResponseError(
                f"{source.label}: no schema received for table {source.table_name!r}"
            )
        policy = source.keep_detached
        if policy is not None and table.keep_detached != policy:
            await self._write(self.store.set_keep_detached, table.name, policy)
            table = self.store.tables[table.name]
        return table

    async def _on_event_async(self, source: Source, shape_id: int, event: StreamEvent) -> None:
        progress = self.progress.get(source.key)
        if event.kind == "retry" and event.delay is not None:
            message = event.message
            if event.status == 429:
                message = f"subscription limit reached, retrying in {event.delay:.0f} s"
                log.warning("%s: %s", source.label, message)
            retry_at = iso(time.time() + event.delay)
            if progress is not None:
                progress.state = "backing-off"
                progress.error = message
            await self._write(
                self.store.set_status,
                shape_id,
                "backing-off",
                error=message,
                next_retry_at=retry_at,
            )
        elif event.kind == "must-refetch" and progress is not None:
            progress.state = "refetching"
            await self._write(self.store.set_status, shape_id, "refetching", error=None)

    def _on_event(self, source: Source, shape_id: int, event: StreamEvent) -> None:
        task = asyncio.get_running_loop().create_task(self._on_event_async(source, shape_id, event))
        task.add_done_callback(_log_task_error)

    async def _backing_off(
        self, source: Source, shape_id: int, exc: ReplicaError, delay: float
    ) -> None:
        log.warning("%s: %s; retrying in %.1f s", source.label, exc, delay)
        progress = self.progress[source.key]
        progress.state, progress.error = "backing-off", str(exc)
        await self._write(
            self.store.set_status,
            shape_id,
            "backing-off",
            error=str(exc),
            next_retry_at=iso(time.time() + delay),
        )

    async def _fail(self, source: Source, shape_id: int, exc: ReplicaError) -> None:
        log.error("%s: %s", source.label, exc)
        progress = self.progress[source.key]
        progress.state, progress.error = "failed", str(exc)
        self.failed[source.key] = exc
        await self._write(self.store.set_status, shape_id, "failed", error=str(exc))

    async def _committed(self, last_seq: int, changes: int) -> None:
        """Wake same-process listeners; prune the change log when it is time. Neither may
        disturb syncing, so their failures are only logged."""
        if self.on_commit is not None:
            try:
                self.on_commit(last_seq)
            except Exception:
                log.exception("the on_commit hook failed")
            await asyncio.sleep(0)  # let listeners it woke on this loop run first
        if self.retention.due(changes):
            try:
                await self._write(self.retention.prune, self.store.conn)
            except (sqlite3.Error, ReplicaError) as exc:
                log.warning("pruning the change log failed: %s", exc)

    def _lookup(self, table: str, key: Any) -> Mapping[str, Any] | None:
        """A committed row, read on the event loop's own connection (never the writer's):
        the published one, else the newest one staged by a snapshot still in progress (a
        process restarted mid-snapshot meets updates to rows only staged so far)."""
        if self._reader is None:
            self._reader = connect(self.store.path, readonly=True)
            self._reader.row_factory = sqlite3.Row
        spec = self.store.tables[table]
        where = f"WHERE {ident(spec.key_column)} = ?"
        row = self._reader.execute(f"SELECT * FROM {ident(table)} {where}", (key,)).fetchone()
        if row is None:
            with contextlib.suppress(sqlite3.OperationalError):  # nothing staged yet
                row = self._reader.execute(
                    f"SELECT * FROM {staged_table(spec)} {where} ORDER BY rowid DESC LIMIT 1",
                    (key,),
                ).fetchone()
        return dict(row) if row is not None else None

    async def _write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store call in the single writer thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, lambda: fn(*args, **kwargs))


@dataclass(slots=True)
class _Mapped:
    """A page mapped for its table: its rows, and the tasks still filling them in."""

    page: Batch
    table: TableSpec
    changes: list[RowChange]
    pending: list[asyncio.Task[None]]


async def _abandon(
    pending: list[asyncio.Task[None]],
    ahead: asyncio.Task[_Mapped] | None,
    ahead_pending: list[asyncio.Task[None]],
) -> None:
    """Give up what is in flight when a stream ends: the downloads of the page not written
    yet (`pending`), the page read ahead and its downloads are cancelled (the ones done
    are left alone), and over before this returns. (Pages may share a download, so they
    are given up together.)"""
    tasks: list[asyncio.Future[Any]] = [*pending, *ahead_pending]
    if ahead is not None:
        tasks.append(ahead)
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


def _days(seconds: float) -> str:
    return f"{seconds / 86400:g} days" if seconds >= 86400 else f"{seconds:g} s"


#: How often (s) a following shape looks for rows that left it unannounced.
LEFT_BEHIND_EVERY = 60.0

#: Wire changes mapped at a time (see `Engine._map`).
MAP_SLICE = 500

#: A quiet shape's position (and its `last_up_to_date`) is rewritten at least this often.
KEEP_ALIVE_REFRESH = 300.0


def _keep_alive(page: Any, written: tuple[str | None, str, float]) -> bool:
    """An empty live reply on the written handle: nothing to write now, even if its offset
    moved (Trigger.dev's native backend gives every empty poll a new one). The stream asks
    on from the new offset; it is stored with the next real change, or with the next empty
    reply once `KEEP_ALIVE_REFRESH` has passed. Resuming from the older offset after a crash
    reads the same nothing again."""
    return (
        page.live
        and page.up_to_date
        and not page.changes
        and not page.reset
        and page.position.handle == written[0]
        and time.monotonic() - written[2] < KEEP_ALIVE_REFRESH
    )


def _log_task_error(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("status update failed: %s", task.exception())


__all__ = ["Engine", "ShapeProgress", "Source"]
