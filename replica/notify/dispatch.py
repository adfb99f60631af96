"""Delivering logged changes to callbacks: each subscription follows the log from its own
cursor, in commit order, independently of the others.

One path for every case: whether the commit came from this process (the engine's
`on_commit` hook wakes us at once) or another one (watchfiles / `data_version`), delivery
reads `_replica_changes` after the cursor. Durable consumers acknowledge each change
(in the callback's own transaction with `transactional=True`); a failing callback is retried
with back-off, then parked, and never holds up other subscriptions or the sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from replica.notify.changes import Change, LogReader
from replica.notify.consumers import LEASE_SECONDS, ConsumerCursors, lease_free
from replica.notify.filters import FilterError, FilterEvaluationError, FilterEvaluator
from replica.notify.subscriptions import (
    FilterFailure,
    NextBatch,
    StopDelivery,
    Subscription,
    next_batch,
)
from replica.notify.wake import ChangeSignal, Pulse
from replica.store.database import connect

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Changes read from the log per batch (a read runs on the event loop: keep it short).
BATCH_SIZE = 200
#: A durable cursor moved past filtered-out changes is saved at most this often (seconds).
SAVE_SKIPPED_EVERY = 1.0


class _Outcome(enum.Enum):
    DELIVERED = 1
    PARKED = 2
    LEASE_LOST = 3


@dataclass(eq=False)
class _Runner:
    """A subscription's state inside one `Dispatcher.run`."""

    sub: Subscription
    cursor: int = 0
    saved: int = 0  # durable: the cursor as stored
    saved_at: float = 0.0
    lease_lost: bool = False


class Dispatcher:
    """Runs every subscription until `stop()`.

    `inline=True` (blocking `Replica.listen`) runs synchronous callbacks and SQLite writes
    on the event loop's thread, so callbacks run on the caller's thread; otherwise writes
    (which may wait for the sync's write lock) run on one private thread and synchronous
    callbacks in the loop's default executor, so the event loop (perhaps also running the
    sync engine) never blocks on them. Reads of the log always run on the loop.
    """

    def __init__(
        self,
        path: str | Path,
        subscriptions: Sequence[Subscription],
        signal: ChangeSignal,
        *,
        owner: str | None = None,
        inline: bool = False,
        batch_size: int = BATCH_SIZE,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.path = Path(path)
        self.subscriptions = list(subscriptions)
        self.signal = signal
        self.owner = owner
        self.inline = inline
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._stop_requested = False
        self._write_lock: asyncio.Lock | None = None
        self.reader: LogReader | None = None
        self.evaluator: FilterEvaluator | None = None
        self.cursors: ConsumerCursors | None = None
        self._peek: ConsumerCursors | None = None
        self._writer: sqlite3.Connection | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def stop(self) -> None:
        """End `run` (thread-safe; an undelivered change is delivered next time)."""
        self._stop_requested = True
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)

    async def run(self, timeout: float | None = None) -> None:
        """Deliver until `stop()` (or `timeout` seconds). A callback's failure never ends
        it; an unexpected error (the database vanished) does, after cleaning up."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        if self._stop_requested:
            return
        self._write_lock = asyncio.Lock()
        if not self.inline:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="replica-notify")
        try:
            await self._db(self._open)
        except BaseException:
            await self._shutdown_executor()
            raise
        log_pulse = Pulse(self.signal)
        commit_pulse = Pulse(self.signal, any_commit=True)
        runners = [_Runner(sub) for sub in self.subscriptions]
        tasks = [
            asyncio.create_task(self._consume(r, log_pulse, commit_pulse), name=r.sub.label)
            for r in runners
        ]
        stopping = asyncio.create_task(self._stopping.wait())
        deadline = None if timeout is None else self._loop.time() + timeout
        try:
            pending: set[asyncio.Task[Any]] = {*tasks, stopping}
            while stopping in pending:
                left = None if deadline is None else max(0.0, deadline - self._loop.time())
                done, pending = await asyncio.wait(
                    pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    break  # timeout
                for task in done:
                    if task is not stopping and not task.cancelled() and task.exception():
                        raise task.exception()  # type: ignore[misc]
        finally:
            stopping.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            log_pulse.close()
            commit_pulse.close()
            for runner in runners:
                if not runner.sub.consumer:
                    runner.sub.cursor = runner.cursor
            with contextlib.suppress(sqlite3.Error):
                await self._db(self._close, runners)
            await self._shutdown_executor()

    async def _shutdown_executor(self) -> None:
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown, True)

    def _open(self) -> None:
        reader = connect(self.path, readonly=True)
        self.reader = LogReader(reader)
        self.evaluator = FilterEvaluator(reader)
        self._writer = connect(self.path)
        self.cursors = ConsumerCursors(self._writer, self.owner)
        # Reads of consumer rows on the reader: polling them never takes the write lock.
        self._peek = ConsumerCursors(reader, self.cursors.owner)

    def _close(self, runners: Sequence[_Runner]) -> None:
        try:
            if self.cursors is not None:
                for runner in runners:
                    name = runner.sub.consumer
                    if name:
                        if runner.cursor > runner.saved and not runner.lease_lost:
                            self.cursors.ack(name, runner.cursor)
                        self.cursors.release(name)
        finally:
            if self.reader is not None:
                self.reader.conn.close()
            if self._writer is not None:
                self._writer.close()

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """SQLite work: inline, or on the private thread."""
        if self._executor is None:
            return fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def _write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Work on the writer connection, never inside another's open transaction."""
        assert self._write_lock is not None
        async with self._write_lock:
            return await self._db(fn, *args, **kwargs)

    # -- one subscription ---------------------------------------------------------------

    async def _consume(self, runner: _Runner, log_pulse: Pulse, commit_pulse: Pulse) -> None:
        sub = runner.sub
        if not sub.consumer:
            runner.cursor = sub.cursor
            await self._follow(runner, log_pulse, commit_pulse)
            return
        while True:
            await self._claim(runner, commit_pulse)
            renewer = asyncio.create_task(self._renew(runner))
            try:
                await self._follow(runner, log_pulse, commit_pulse)
            finally:
                renewer.cancel()
            log.warning("%s: lease lost to another listener; standing by", sub.label)

    async def _claim(self, runner: _Runner, commit_pulse: Pulse) -> None:
        sub, cursors = runner.sub, self.cursors
        assert sub.consumer and cursors is not None
        assert self._peek is not None
        waiting = False
        while True:
            seen = commit_pulse.generation
            held = self._peek.get(sub.consumer)
            # Only try (a write transaction) when the lease looks free: a standby listener
            # is woken by every commit and must not compete with the sync for the lock.
            free = held is None or lease_free(held.owner, held.lease_until, cursors.owner)
            if free and await self._write(cursors.claim, sub.consumer, self.lease_seconds):
                break
            if not waiting:
                if held is None:
                    log.warning("%s was dropped; waiting for it to be registered", sub.label)
                else:
                    log.info("%s: another listener holds it; waiting for its lease", sub.label)
                waiting = True
            await commit_pulse.wait(seen, timeout=self.lease_seconds / 3)
        status = await self._write(cursors.get, sub.consumer)
        assert status is not None
        if status.state == "parked":
            # A new listener is the usual way a fix gets deployed: try again.
            log.warning(
                "%s was parked at change %s (%s); retrying",
                sub.label,
                status.failed_seq,
                status.last_error,
            )
            await self._write(cursors.resume, sub.consumer)
        runner.cursor = runner.saved = status.last_seq
        runner.saved_at = time.monotonic()
        runner.lease_lost = False

    async def _renew(self, runner: _Runner) -> None:
        assert runner.sub.consumer and self.cursors is not None
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                renewed = await self._write(
                    self.cursors.renew, runner.sub.consumer, self.lease_seconds
                )
            except sqlite3.Error as exc:
                log.warning("%s: renewing the lease failed: %s", runner.sub.label, exc)
                continue
            if not renewed:
                runner.lease_lost = True
                return

    async def _follow(self, runner: _Runner, log_pulse: Pulse, commit_pulse: Pulse) -> None:
        """Deliver from `runner.cursor` on; returns only if a durable lease was lost."""
        sub = runner.sub
        while not runner.lease_lost:
            seen = log_pulse.generation
            # Inline even under alisten: a WAL read never waits for a lock, and a hop to a
            # thread costs milliseconds of GIL hand-over when the loop is busy syncing.
            read = self._read(runner)
            for item in read.items:
                outcome = await self._deliver(runner, item)
                if outcome is _Outcome.LEASE_LOST:
                    runner.lease_lost = True
                    return
                if outcome is _Outcome.PARKED:
                    if not sub.consumer:
                        return  # logged; an anonymous callback cannot be resumed
                    await self._parked(runner, commit_pulse)
                    break  # re-read from the (possibly moved) cursor
                runner.cursor = item.seq
            else:
                if read.through > runner.cursor:
                    runner.cursor = read.through
                    await self._save_skipped(runner)
                if runner.cursor >= log_pulse.head:
                    # Caught up with every commit heard of: a later one moves the pulse.
                    await log_pulse.wait(seen)

    def _read(self, runner: _Runner) -> NextBatch:
        assert self.reader is not None and self.evaluator is not None
        return next_batch(
            self.reader, self.evaluator, runner.sub, runner.cursor, limit=self.batch_size
        )

    async def _deliver(self, runner: _Runner, item: Change | FilterFailure) -> _Outcome:
        """Deliver one change, retrying with back-off; parked after `retry.attempts`."""
        sub = runner.sub
        failures = 0
        while True:
            try:
                if isinstance(item, FilterFailure):
                    raise item.error
                return await self._attempt(runner, item)
            except StopDelivery:
                self.stop()
                await asyncio.Event().wait()  # cancelled by run's cleanup
                raise  # pragma: no cover
            except Exception as exc:
                failures += 1
                parked = failures >= sub.retry.attempts
                delay = sub.retry.delay(failures)
                error = f"{type(exc).__name__}: {exc}"
                if parked:
                    log.error(
                        "%s failed on change %d (%d attempts), parked: %s",
                        sub.label,
                        item.seq,
                        failures,
                        error,
                        exc_info=not isinstance(exc, (FilterError, FilterEvaluationError)),
                    )
                else:
                    log.warning(
                        "%s failed on change %d (attempt %d of %d), retrying in %.2f s: %s",
                        sub.label,
                        item.seq,
                        failures,
                        sub.retry.attempts,
                        delay,
                        error,
                    )
                sub.state, sub.last_error = ("parked" if parked else "retrying"), error
                if sub.consumer:
                    assert self.cursors is not None
                    await self._write(
                        self.cursors.failed,
                        sub.consumer,
                        item.seq,
                        error,
                        attempts=failures,
                        retry_at=_iso_in(delay),
                        parked=parked,
                    )
                if parked:
                    return _Outcome.PARKED
                await asyncio.sleep(delay)

    async def _attempt(self, runner: _Runner, change: Change) -> _Outcome:
        sub = runner.sub
        if sub.transactional:
            return await self._attempt_in_transaction(runner, change)
        if sub.is_async:
            await sub.callback(change)
        elif self.inline:
            sub.callback(change)
        else:
            await asyncio.get_running_loop().run_in_executor(None, sub.callback, change)
        if sub.state != "ok":
            sub.state, sub.last_error = "ok", None
        if not sub.consumer:
            return _Outcome.DELIVERED
        assert self.cursors is not None
        if not await self._write(
            self.cursors.ack, sub.consumer, change.seq, ttl=self.lease_seconds
        ):
            return _Outcome.LEASE_LOST
        runner.saved, runner.saved_at = change.seq, time.monotonic()
        return _Outcome.DELIVERED

    async def _attempt_in_transaction(self, runner: _Runner, change: Change) -> _Outcome:
        """The callback's writes and the acknowledgement commit together (exactly once)."""
        sub, conn, cursors = runner.sub, self._writer, self.cursors
        assert sub.consumer and conn is not None and cursors is not None
        assert self._write_lock is not None
        async with self._write_lock:
            await self._db(conn.execute, "BEGIN IMMEDIATE")
            try:
                if sub.is_async:
                    await sub.callback(change, conn)
                else:
                    await self._db(sub.callback, change, conn)
                if not conn.in_transaction:
                    raise RuntimeError(
                        "a transactional callback must not commit or roll back: replica "
                        "commits its writes together with the acknowledgement"
                    )
                acked = await self._db(
                    cursors.ack, sub.consumer, change.seq, conn=conn, ttl=self.lease_seconds
                )
                if not acked:
                    await self._db(conn.execute, "ROLLBACK")
                    return _Outcome.LEASE_LOST
                await self._db(conn.execute, "COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        await self._db(conn.execute, "ROLLBACK")
                raise
        sub.state, sub.last_error = "ok", None
        runner.saved, runner.saved_at = change.seq, time.monotonic()
        return _Outcome.DELIVERED

    async def _parked(self, runner: _Runner, commit_pulse: Pulse) -> None:
        """Wait until the consumer is resumed (`Replica.resume_consumer`, any process)."""
        name, cursors = runner.sub.consumer, self.cursors
        assert name and cursors is not None
        assert self._peek is not None
        while not runner.lease_lost:
            seen = commit_pulse.generation
            status = self._peek.get(name)
            if status is None:
                log.warning("consumer %r was dropped while parked; it stops here", name)
                await asyncio.Event().wait()
            if status.state != "parked":
                log.info("consumer %r resumed after change %d", name, status.last_seq)
                runner.cursor = runner.saved = status.last_seq
                runner.sub.state = "ok"
                return
            await commit_pulse.wait(seen, timeout=5.0)

    async def _save_skipped(self, runner: _Runner) -> None:
        """Store a durable cursor moved past filtered-out changes (throttled: re-reading a
        few filtered changes after a crash costs nothing)."""
        name = runner.sub.consumer
        if not name or runner.cursor <= runner.saved:
            return
        if time.monotonic() - runner.saved_at < SAVE_SKIPPED_EVERY:
            return
        assert self.cursors is not None
        if await self._write(self.cursors.ack, name, runner.cursor, ttl=self.lease_seconds):
            runner.saved, runner.saved_at = runner.cursor, time.monotonic()
        else:
            runner.lease_lost = True


def _iso_in(seconds: float) -> str:
    t = time.time() + seconds
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


__all__ = ["BATCH_SIZE", "Dispatcher"]
