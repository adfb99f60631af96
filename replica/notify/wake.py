"""Waking listeners when the database changes, whichever process committed.

Three signals, one outcome (`ChangeSignal` tells its subscribers the newest change-log
sequence number and bumps a commit counter):

- in-process: the sync engine calls `notify(seq)` after each commit (no I/O, immediate);
- the fast cross-process hint: watchfiles on the database's directory, filtered to the
  database file and its `-wal` (the directory, because SQLite creates and deletes `-wal`);
- the safety net: `PRAGMA data_version` on an idle autocommit connection of our own, polled
  every `poll_interval` (watchfiles can miss events on macOS, Docker mounts and network
  filesystems), and every few milliseconds for a second after any change, so bursts are
  followed closely without a busy loop when idle.

A file event is only a hint: every wake is confirmed by `data_version`, and readers re-read
the log, so coalesced or spurious events (our own connections touching `-wal`) cost one
cheap query, never a missed change (peers-and-sqlite.md §B.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from replica.notify.changes import head_seq
from replica.protocol.deadline import within
from replica.store.database import connect

log = logging.getLogger(__name__)

#: Poll period while idle (seconds); watchfiles usually wakes listeners well before.
DEFAULT_POLL_INTERVAL = 0.25
#: Poll period for `HOT_WINDOW` seconds after a change: bursts are followed closely.
HOT_INTERVAL = 0.003
HOT_WINDOW = 1.0
#: watchfiles' batching step (ms): a file event reaches us within about one to two steps.
WATCH_STEP_MS = 10

Listener = Callable[[int, int], None]


class ChangeSignal:
    """Tells subscribers `(head, commits)` whenever a commit is seen (from any thread).

    `head` is the newest change-log sequence number, `commits` counts commits seen (changes
    to consumer cursors and shape status count too, the log's head does not move for them).
    Threads run only while someone is subscribed.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        watch_files: bool = True,
    ) -> None:
        self.path = Path(path).resolve()
        self.poll_interval = poll_interval
        self.watch_files = watch_files
        self.head = 0
        self.commits = 0
        self._listeners: dict[int, Listener] = {}
        self._next_id = 0
        self._lock = threading.Lock()
        self._watcher: _Watcher | None = None
        self._hot_until = 0.0

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(head, commits)` on every commit seen; returns the unsubscribe."""
        with self._lock:
            ident = self._next_id
            self._next_id += 1
            self._listeners[ident] = listener
            if self._watcher is None:
                self._watcher = _Watcher(self)
                self.head = max(self.head, self._watcher.start())

        def unsubscribe() -> None:
            with self._lock:
                self._listeners.pop(ident, None)
                watcher = None
                if not self._listeners:
                    watcher, self._watcher = self._watcher, None
            if watcher is not None:
                watcher.stop()

        return unsubscribe

    def notify(self, seq: int | None = None) -> None:
        """A commit happened in this process (up to change `seq`): wake subscribers now."""
        self._seen(seq)
        with self._lock:
            watcher = self._watcher
        if watcher is not None:
            watcher.kick.set()

    def close(self) -> None:
        """Stop watching (subscribers are forgotten)."""
        with self._lock:
            self._listeners.clear()
            watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()

    @property
    def hot(self) -> bool:
        return time.monotonic() < self._hot_until

    def _seen(self, head: int | None) -> None:
        with self._lock:
            if head is not None and head > self.head:
                self.head = head
            self.commits += 1
            self._hot_until = time.monotonic() + HOT_WINDOW
            listeners = list(self._listeners.values())
            head, commits = self.head, self.commits
        for listener in listeners:
            listener(head, commits)


class _Watcher:
    """The threads of one watching period: a data_version poller and a file watcher, with a
    connection of their own."""

    def __init__(self, signal: ChangeSignal) -> None:
        self.signal = signal
        self.kick = threading.Event()
        self._stop = threading.Event()
        self._conn: sqlite3.Connection | None = None
        self._data_version = 0
        self._threads: list[threading.Thread] = []

    def start(self) -> int:
        """Start the threads; returns the log's head now."""
        self._conn = connect(self.signal.path, readonly=True)
        self._data_version = self._read_data_version()
        head = head_seq(self._conn)
        self._threads = [threading.Thread(target=self._poll, name="replica-poll", daemon=True)]
        if self.signal.watch_files:
            self._threads.append(
                threading.Thread(target=self._watch, name="replica-watch", daemon=True)
            )
        for thread in self._threads:
            thread.start()
        return head

    def stop(self) -> None:
        self._stop.set()
        self.kick.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _poll(self) -> None:
        signal = self.signal
        while not self._stop.is_set():
            self.kick.wait(HOT_INTERVAL if signal.hot else signal.poll_interval)
            self.kick.clear()
            if self._stop.is_set():
                return
            try:
                version = self._read_data_version()
                if version != self._data_version:
                    self._data_version = version
                    assert self._conn is not None
                    signal._seen(head_seq(self._conn))
            except sqlite3.Error as exc:
                # A transient lock or I/O hiccup: the next poll tries again.
                log.warning("checking %s for changes failed: %s", signal.path, exc)

    def _read_data_version(self) -> int:
        assert self._conn is not None
        # fetchall: the statement is finished, so no read transaction lingers (a lingering
        # one would hide other commits from data_version and block checkpoints).
        return int(self._conn.execute("PRAGMA data_version").fetchall()[0][0])

    def _watch(self) -> None:
        import watchfiles

        quiet = logging.getLogger("watchfiles.main")
        if quiet.level == logging.NOTSET:
            # It logs every batch of events at INFO; for us they are routine.
            quiet.setLevel(logging.WARNING)

        path = self.signal.path
        wanted = {str(path), f"{path}-wal"}

        def only_database(_change: object, changed: str) -> bool:
            return os.path.realpath(changed) in wanted

        try:
            for _ in watchfiles.watch(
                path.parent,
                watch_filter=only_database,
                step=WATCH_STEP_MS,
                debounce=WATCH_STEP_MS * 20,
                stop_event=self._stop,
                rust_timeout=1000,
                raise_interrupt=False,
                recursive=False,
            ):
                self.kick.set()
        except Exception as exc:  # e.g. the OS watch limit: polling still works
            log.warning(
                "watching %s for changes failed (%s); relying on polling every %.2f s",
                path.parent,
                exc,
                self.signal.poll_interval,
            )


class Pulse:
    """An asyncio view of a `ChangeSignal`: `await pulse.wait(seen)` returns once the log's
    head (or, with `any_commit`, the commit count) moved past what the caller last saw."""

    def __init__(self, signal: ChangeSignal, *, any_commit: bool = False) -> None:
        self.signal = signal
        self.any_commit = any_commit
        self.generation = 0
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._event = asyncio.Event()
        self._last_head = signal.head
        self._unsubscribe: Callable[[], None] | None = signal.subscribe(self._from_thread)
        self._last_head = max(self._last_head, signal.head)

    def _from_thread(self, head: int, commits: int) -> None:
        if threading.get_ident() == self._thread:
            self._fire(head, commits)  # the engine's hook, on our loop: no round trip
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self._loop.call_soon_threadsafe(self._fire, head, commits)

    @property
    def head(self) -> int:
        """The newest change-log sequence number this pulse has heard of."""
        return self._last_head

    def _fire(self, head: int, commits: int) -> None:
        if head > self._last_head or self.any_commit:
            self._last_head = max(self._last_head, head)
            self.generation += 1
            self._event.set()

    def kick(self) -> None:
        """Wake waiters now (e.g. a consumer was resumed in this process)."""
        self.generation += 1
        self._event.set()

    async def wait(self, seen: int, timeout: float | None = None) -> bool:
        """Wait until `generation` differs from `seen`; False on timeout."""
        while self.generation == seen:
            self._event.clear()
            try:
                await within(self._event.wait(), timeout)
            except asyncio.TimeoutError:
                return self.generation != seen
        return True

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


__all__ = ["DEFAULT_POLL_INTERVAL", "ChangeSignal", "Pulse"]
