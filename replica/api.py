"""`replica.Replica`: the Python face of a replica database.

Open (or create) a database with no network, query it, read typed runs, react to changes
with callbacks (in this process or committed by another), watch queries, and follow runs
like the Trigger.dev SDK's streams. See docs/callbacks.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import threading
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, overload

import httpx

from replica.engine import Engine
from replica.errors import QueryRefusedError, ReplicaError
from replica.feeds import Feed
from replica.models import Run
from replica.notify import runs as run_streams
from replica.notify.changes import head_seq
from replica.notify.consumers import ConsumerCursors, ConsumerStatus, RetryPolicy, make_owner
from replica.notify.dispatch import Dispatcher
from replica.notify.live import LiveQuery
from replica.notify.subscriptions import Subscription, checked_terms
from replica.notify.wake import DEFAULT_POLL_INTERVAL, ChangeSignal
from replica.protocol.client import HttpClient
from replica.run_queries import select_runs
from replica.settings import default_db
from replica.sources.subscriptions import sources_for, sync_clients
from replica.store import Store
from replica.store.database import connect, migrate
from replica.store.readonly import open_readonly, run_query
from replica.task_models import OtherTasks, RunModels

if TYPE_CHECKING:
    import sqlite_utils
    from typing_extensions import TypeForm

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
RunT = TypeVar("RunT", bound=Run[Any, Any])
#: `other=` values after which every run read is of a model given (no untyped `Run`).
NoUntypedRuns = Literal["error", "skip"]
#: `models={task: model}`: checked at run time; type checkers see `Run[Any, Any]` reads.
TaskModels = Mapping[str, type[Run[Any, Any]]]
P = ParamSpec("P")
R = TypeVar("R")


def _in_worker_thread(read: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]:
    """The async twin of a read: the same call on a worker thread. Type checkers see the
    read's own signature and overloads, so the twins never drift apart."""

    @functools.wraps(read)
    async def twin(*args: P.args, **kwargs: P.kwargs) -> R:
        return await asyncio.to_thread(read, *args, **kwargs)

    twin.__name__ = f"a{read.__name__}"
    twin.__qualname__ = twin.__qualname__.rpartition(".")[0] + "." + twin.__name__
    twin.__doc__ = f"`{read.__name__}()` for async code (runs in a worker thread)."
    return twin


class Replica:
    """A replica database: `Replica("replica.db")` opens it, creating it if needed.

    Opening talks to no network; `replica sync` fills the database, or `sync()` /
    `async_sync()` from this process. Use it as a context manager or call `close()`.
    Methods may be called from any thread; `listen()` blocks the calling thread,
    `alisten()` is its async twin.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        watch_files: bool = True,
    ) -> None:
        self.path = Path(path if path is not None else default_db())
        self._lock = threading.RLock()
        self._conn = connect(self.path)  # consumer bookkeeping; never holds a transaction
        try:
            migrate(self._conn)
            self._reader = open_readonly(self.path)
        except BaseException:
            self._conn.close()
            raise
        self._signal = ChangeSignal(self.path, poll_interval=poll_interval, watch_files=watch_files)
        self._owner = make_owner()
        self._subscriptions: list[Subscription] = []
        self._dispatchers: set[Dispatcher] = set()
        self._engines: set[tuple[Engine, asyncio.AbstractEventLoop]] = set()
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Stop listeners and close the database (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        self.stop_sync()
        self._signal.close()
        with self._lock:
            self._reader.close()
            self._conn.close()

    def __enter__(self) -> Replica:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Replica({str(self.path)!r})"

    # -- reading --------------------------------------------------------------------------

    def query(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[dict[str, Any]]:
        """Run a read-only SQL query; rows as dicts (JSON columns as JSON text)."""
        with self._lock:
            names, rows = run_query(self._reader, sql, params)
        return [dict(zip(names, row, strict=True)) for row in rows]

    @overload
    def run(self, run_id: str, *, model: TypeForm[RunT], other: NoUntypedRuns) -> RunT | None: ...
    @overload
    def run(
        self,
        run_id: str,
        *,
        model: TypeForm[RunT],
        other: Literal["run"] = ...,
    ) -> RunT | Run[Any, Any] | None: ...
    @overload
    def run(
        self,
        run_id: str,
        *,
        models: TaskModels | None = ...,
        other: OtherTasks = ...,
        payload_model: type[Any] | None = ...,
        output_model: type[Any] | None = ...,
    ) -> Run[Any, Any] | None: ...
    def run(
        self,
        run_id: str,
        *,
        model: Any = Run,
        models: TaskModels | None = None,
        other: OtherTasks = "run",
        payload_model: type[Any] | None = None,
        output_model: type[Any] | None = None,
    ) -> Run[Any, Any] | None:
        """The run with this id (`run_...`) as a typed `Run`, or None if not replicated.

        `payload_model=MyPayload, output_model=MyOutput` (or `model=Run[MyPayload,
        MyOutput]`, the spelling type checkers follow) validates payload and output into
        your models; a run that does not fit raises pydantic's `ValidationError`.
        `model=EmailRun | ReportRun` (models narrowing `task_identifier` to a `Literal`) or
        `models={"send-email": EmailRun}` reads the run with the model of its task; a run
        of another task is an untyped `Run` (`other="run"`), refused with `ReplicaError`
        (`"error"`) or None (`"skip"`)."""
        chosen = RunModels.of(
            model, models, other, payload_model=payload_model, output_model=output_model
        )
        rows = self.query("SELECT * FROM runs WHERE id = ?", (run_id,))
        return chosen.from_row(rows[0]) if rows else None

    @overload
    def runs(
        self,
        tag: str | Sequence[str] | None = None,
        status: str | Sequence[str] | None = None,
        task: str | None = None,
        limit: int | None = None,
        *,
        include_detached: bool = False,
        model: TypeForm[RunT],
        other: NoUntypedRuns,
    ) -> list[RunT]: ...
    @overload
    def runs(
        self,
        tag: str | Sequence[str] | None = None,
        status: str | Sequence[str] | None = None,
        task: str | None = None,
        limit: int | None = None,
        *,
        include_detached: bool = False,
        model: TypeForm[RunT],
        other: Literal["run"] = ...,
    ) -> list[RunT | Run[Any, Any]]: ...
    @overload
    def runs(
        self,
        tag: str | Sequence[str] | None = None,
        status: str | Sequence[str] | None = None,
        task: str | None = None,
        limit: int | None = None,
        *,
        include_detached: bool = False,
        models: TaskModels | None = ...,
        other: OtherTasks = ...,
        payload_model: type[Any] | None = ...,
        output_model: type[Any] | None = ...,
    ) -> list[Run[Any, Any]]: ...
    def runs(
        self,
        tag: str | Sequence[str] | None = None,
        status: str | Sequence[str] | None = None,
        task: str | None = None,
        limit: int | None = None,
        *,
        include_detached: bool = False,
        model: Any = Run,
        models: TaskModels | None = None,
        other: OtherTasks = "run",
        payload_model: type[Any] | None = None,
        output_model: type[Any] | None = None,
    ) -> list[Any]:
        """Runs, newest first: with every one of `tag`s, any of `status`es (public
        RunStatus values), of `task`. Runs no subscribed shape holds any more are history
        and left out unless `include_detached`. Models as for `run()` (`other="skip"`
        leaves runs of other tasks out)."""
        chosen = RunModels.of(
            model, models, other, payload_model=payload_model, output_model=output_model
        )
        sql, params = select_runs(tag, status, task, limit, include_detached=include_detached)
        read = (chosen.from_row(row) for row in self.query(sql, params))
        return [run for run in read if run is not None]

    def sqlite_utils(self) -> sqlite_utils.Database:
        """A read-only `sqlite_utils.Database` on this replica, with its own connection:
        sqlite-utils' Python API for reading. A write through it raises `QueryRefusedError`
        (also a `sqlite3.OperationalError`). Close it with `close()` or a `with` block."""
        from replica.sqlite_utils_view import ReadOnlyDatabase  # sqlite-utils on first use

        return ReadOnlyDatabase(self.path)

    # Async twins of the reads, for event loops (web apps): the same call on a worker
    # thread, so a large result never stalls the loop. Reads share one connection and run
    # one at a time.

    async def aquery(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[dict[str, Any]]:
        """`query()` for async code (runs in a worker thread)."""
        return await asyncio.to_thread(self.query, sql, params)

    arun = _in_worker_thread(run)
    aruns = _in_worker_thread(runs)

    # -- callbacks ------------------------------------------------------------------------

    def on_change(
        self,
        table: str | None = None,
        *,
        where: str | None = None,
        ops: Iterable[str] | None = None,
        consumer: str | None = None,
        transactional: bool = False,
        start: Literal["end", "beginning"] | int = "end",
        retry: RetryPolicy | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated function for changes to `table` (every table if None).

        `where` is a SQL condition over the row (the previous row for a delete), checked
        now and evaluated by SQLite; `ops` limits to some of insert/update/delete. Sync and
        async functions are both fine; they get one `Change` (a `reset` too, whatever the
        filters). With `consumer="name"` the cursor is durable: delivery resumes after the
        last acknowledged change, across restarts. `transactional=True` (needs `consumer`)
        calls `fn(change, conn)` inside an open transaction on this database: its writes
        commit together with the acknowledgement, so each change takes effect exactly
        once. `start` is where a new cursor begins: `"end"` (changes committed from now
        on), `"beginning"` (the oldest retained change) or a sequence number. A failing
        callback is retried per `retry`, then parked.
        """
        with self._lock:
            row_filter, chosen_ops = checked_terms(
                self._reader,
                self.path,
                table=table,
                where=where,
                ops=ops,
                consumer=consumer,
                transactional=transactional,
            )
        if consumer is not None and any(s.consumer == consumer for s in self._subscriptions):
            raise ReplicaError(f"consumer {consumer!r} is already registered here")
        cursor = self._start_seq(start)

        def register(fn: F) -> F:
            if not callable(fn):
                raise TypeError("on_change decorates a function")
            subscription = Subscription(
                callback=fn,
                table=table,
                row_filter=row_filter,
                ops=chosen_ops,
                consumer=consumer,
                transactional=transactional,
                retry=retry or RetryPolicy(),
                cursor=cursor,
            )
            if consumer is not None:
                self._register_consumer(subscription, cursor)
            self._subscriptions.append(subscription)
            return fn

        return register

    def _start_seq(self, start: Literal["end", "beginning"] | int) -> int:
        if start == "end":
            with self._lock:
                return head_seq(self._reader)
        if start == "beginning":
            return 0
        if isinstance(start, int) and not isinstance(start, bool) and start >= 0:
            return start
        raise ReplicaError(
            f"start={start!r} is not a position", hint='use "end", "beginning" or a seq >= 0'
        )

    def _register_consumer(self, sub: Subscription, start: int) -> None:
        assert sub.consumer is not None
        with self._lock:
            ConsumerCursors(self._conn, self._owner).register(
                sub.consumer,
                start=start,
                table=sub.table,
                where=sub.row_filter.where if sub.row_filter else None,
                ops=sub.ops,
            )

    def listen(self, *, timeout: float | None = None) -> None:
        """Deliver changes to the registered callbacks until `stop()`, Ctrl-C or `timeout`
        seconds (Ctrl-C lets the callback in progress finish, then returns). Blocks;
        synchronous callbacks run on this thread."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise ReplicaError(
                "listen() blocks and cannot run inside an event loop",
                hint="use await db.alisten()",
            )
        asyncio.run(self._listen(inline=True, timeout=timeout, until_interrupted=True))

    async def alisten(self, *, timeout: float | None = None) -> None:
        """`listen()` for async code: runs until `stop()`, cancellation or `timeout`.
        Synchronous callbacks run in the loop's default executor."""
        await self._listen(inline=False, timeout=timeout)

    async def _listen(
        self, *, inline: bool, timeout: float | None, until_interrupted: bool = False
    ) -> None:
        if self._closed:
            raise ReplicaError(f"{self!r} is closed")
        if not self._subscriptions:
            raise ReplicaError(
                "nothing to listen for", hint="register callbacks with @db.on_change first"
            )
        for sub in self._subscriptions:
            if sub.consumer is not None:  # dropped meanwhile? register again
                self._register_consumer(sub, self._start_seq("end"))
        dispatcher = Dispatcher(
            self.path, self._subscriptions, self._signal, owner=self._owner, inline=inline
        )
        with self._lock:
            self._dispatchers.add(dispatcher)
        try:
            with _ended_by_ctrl_c(dispatcher.stop, until_interrupted):
                await dispatcher.run(timeout=timeout)
        finally:
            with self._lock:
                self._dispatchers.discard(dispatcher)

    def stop(self) -> None:
        """End `listen()`/`alisten()` calls (thread-safe)."""
        with self._lock:
            dispatchers = list(self._dispatchers)
        for dispatcher in dispatchers:
            dispatcher.stop()

    def notify_committed(self, seq: int | None = None) -> None:
        """Tell listeners of this process that changes up to `seq` were just committed.

        The sync engine calls this (its `on_commit` hook) so same-process callbacks run at
        once instead of at the next file event or poll. Thread-safe, cheap."""
        self._signal.notify(seq)

    # -- syncing in this process ------------------------------------------------------------

    def sync(
        self, *feeds: Feed, once: bool = False, verify: bool = True, keep_others: bool = False
    ) -> bool:
        """Follow feeds into this database from this process (what `replica sync` does).

        `db.sync(replica.tag("user:1234"), once=True)` returns once everything is up to
        date; without `once` it runs until `stop_sync()` or Ctrl-C. Returns False if a feed
        failed (the error is logged and in `replica status`). Callbacks registered on this
        object and listening in this process are woken at every commit. Shapes synced
        before but not among `feeds` are let go of first (their runs get `detached_at`,
        their Electric rows are deleted), unless `keep_others`.
        """
        return asyncio.run(
            self._sync(
                feeds,
                once=once,
                verify=verify,
                keep_others=keep_others,
                client=None,
                until_interrupted=True,
            )
        )

    async def async_sync(
        self,
        *feeds: Feed,
        once: bool = False,
        verify: bool = True,
        keep_others: bool = False,
        client: httpx.AsyncClient | None = None,
    ) -> bool:
        """`sync()` for async code: runs until up to date (`once`), `stop_sync()` or
        cancellation. `client` lets you share an httpx client (TLS settings, proxies);
        it then fetches the offloaded packets too."""
        return await self._sync(
            feeds, once=once, verify=verify, keep_others=keep_others, client=client
        )

    async def _sync(
        self,
        feeds: Sequence[Feed],
        *,
        once: bool,
        verify: bool,
        keep_others: bool,
        client: httpx.AsyncClient | None,
        until_interrupted: bool = False,
    ) -> bool:
        if self._closed:
            raise ReplicaError(f"{self!r} is closed")
        if not feeds:
            raise ReplicaError("nothing to sync", hint="pass feeds: db.sync(replica.tag('x'))")
        async with contextlib.AsyncExitStack() as stack:
            http: HttpClient | httpx.AsyncClient | None = client
            packets: HttpClient | None = None
            if http is None:
                tls = httpx.create_ssl_context(verify=verify)
                http, packets = await stack.enter_async_context(sync_clients(tls))
            sources = sources_for(feeds, http, packets=packets)
            store = stack.enter_context(Store(self.path))
            engine = Engine(store, http, once=once, on_commit=self.notify_committed)
            loop = asyncio.get_running_loop()
            with self._lock:
                self._engines.add((engine, loop))
            try:
                with _ended_by_ctrl_c(engine.stop, until_interrupted):
                    return await engine.run(sources, keep_others=keep_others)
            finally:
                with self._lock:
                    self._engines.discard((engine, loop))

    def stop_sync(self) -> None:
        """End `sync()`/`async_sync()` calls cleanly (thread-safe)."""
        with self._lock:
            engines = list(self._engines)
        for engine, loop in engines:
            loop.call_soon_threadsafe(engine.stop)

    # -- durable consumers ----------------------------------------------------------------

    def consumers(self) -> list[ConsumerStatus]:
        """Every durable consumer: cursor, state (ok / retrying / parked), last error."""
        with self._lock:
            return ConsumerCursors(self._conn, self._owner).all()

    def resume_consumer(self, name: str, *, skip: bool = False) -> ConsumerStatus:
        """Make a parked consumer deliver again (from the change it failed on, or after it
        with `skip`); a listener running it, in any process, picks this up."""
        with self._lock:
            status = ConsumerCursors(self._conn, self._owner).resume(name, skip=skip)
        self._signal.notify()
        return status

    def drop_consumer(self, name: str) -> bool:
        """Forget a durable consumer, so its cursor no longer holds back log retention."""
        with self._lock:
            return ConsumerCursors(self._conn, self._owner).drop(name)

    # -- live queries and run streams -----------------------------------------------------

    def watch_query(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] = (),
        *,
        debounce: float = 0.05,
    ) -> LiveQuery:
        """A `LiveQuery`: iterate it (async or not) for the result now, then a fresh result
        whenever a table the query reads changes (bursts coalesced over `debounce` s)."""
        return LiveQuery(self.path, self._signal, sql, params, debounce=debounce)  # type: ignore[arg-type]

    @overload
    def subscribe_to_run(
        self,
        run_id: str,
        *,
        stop_on_completion: bool = True,
        model: TypeForm[RunT],
        other: NoUntypedRuns,
    ) -> AsyncIterator[RunT]: ...
    @overload
    def subscribe_to_run(
        self,
        run_id: str,
        *,
        stop_on_completion: bool = True,
        model: TypeForm[RunT],
        other: Literal["run"] = ...,
    ) -> AsyncIterator[RunT | Run[Any, Any]]: ...
    @overload
    def subscribe_to_run(
        self,
        run_id: str,
        *,
        stop_on_completion: bool = True,
        models: TaskModels | None = ...,
        other: OtherTasks = ...,
        payload_model: type[Any] | None = ...,
        output_model: type[Any] | None = ...,
    ) -> AsyncIterator[Run[Any, Any]]: ...
    def subscribe_to_run(
        self,
        run_id: str,
        *,
        stop_on_completion: bool = True,
        model: Any = Run,
        models: TaskModels | None = None,
        other: OtherTasks = "run",
        payload_model: type[Any] | None = None,
        output_model: type[Any] | None = None,
    ) -> AsyncIterator[Any]:
        """`async for run in db.subscribe_to_run(id)`: the run now, then on every change;
        ends after yielding it finished (`finished_at` set), unless told otherwise. Models
        as for `run()`."""
        return run_streams.subscribe_to_run(
            self.path,
            self._signal,
            run_id,
            stop_on_completion=stop_on_completion,
            models=RunModels.of(
                model, models, other, payload_model=payload_model, output_model=output_model
            ),
        )

    @overload
    def subscribe_to_runs_with_tag(
        self, tag: str | Sequence[str], *, model: TypeForm[RunT], other: NoUntypedRuns
    ) -> AsyncIterator[RunT]: ...
    @overload
    def subscribe_to_runs_with_tag(
        self,
        tag: str | Sequence[str],
        *,
        model: TypeForm[RunT],
        other: Literal["run"] = ...,
    ) -> AsyncIterator[RunT | Run[Any, Any]]: ...
    @overload
    def subscribe_to_runs_with_tag(
        self,
        tag: str | Sequence[str],
        *,
        models: TaskModels | None = ...,
        other: OtherTasks = ...,
        payload_model: type[Any] | None = ...,
        output_model: type[Any] | None = ...,
    ) -> AsyncIterator[Run[Any, Any]]: ...
    def subscribe_to_runs_with_tag(
        self,
        tag: str | Sequence[str],
        *,
        model: Any = Run,
        models: TaskModels | None = None,
        other: OtherTasks = "run",
        payload_model: type[Any] | None = None,
        output_model: type[Any] | None = None,
    ) -> AsyncIterator[Any]:
        """Runs with the tag (all of several tags), now and as they change; never ends.
        Models as for `run()`: `model=EmailRun | ReportRun` reads each with its task's."""
        return run_streams.subscribe_to_runs_with_tag(
            self.path,
            self._signal,
            tag,
            models=RunModels.of(
                model, models, other, payload_model=payload_model, output_model=output_model
            ),
        )

    @overload
    def subscribe_to_batch(
        self, batch_id: str, *, model: TypeForm[RunT], other: NoUntypedRuns
    ) -> AsyncIterator[RunT]: ...
    @overload
    def subscribe_to_batch(
        self,
        batch_id: str,
        *,
        model: TypeForm[RunT],
        other: Literal["run"] = ...,
    ) -> AsyncIterator[RunT | Run[Any, Any]]: ...
    @overload
    def subscribe_to_batch(
        self,
        batch_id: str,
        *,
        models: TaskModels | None = ...,
        other: OtherTasks = ...,
        payload_model: type[Any] | None = ...,
        output_model: type[Any] | None = ...,
    ) -> AsyncIterator[Run[Any, Any]]: ...
    def subscribe_to_batch(
        self,
        batch_id: str,
        *,
        model: Any = Run,
        models: TaskModels | None = None,
        other: OtherTasks = "run",
        payload_model: type[Any] | None = None,
        output_model: type[Any] | None = None,
    ) -> AsyncIterator[Any]:
        """The runs of a batch synced with `replica sync --batch`; never ends. Models as
        for `run()`."""
        return run_streams.subscribe_to_batch(
            self.path,
            self._signal,
            batch_id,
            models=RunModels.of(
                model, models, other, payload_model=payload_model, output_model=output_model
            ),
        )


@contextlib.contextmanager
def _ended_by_ctrl_c(stop: Callable[[], None], wanted: bool) -> Iterator[None]:
    """While inside, Ctrl-C (SIGINT) calls `stop` (a clean end: the current callback or
    write finishes) instead of raising KeyboardInterrupt through the event loop. Only for
    the blocking calls on the main thread, which own the loop; elsewhere nothing changes."""
    loop = asyncio.get_running_loop()
    if not wanted or threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        loop.add_signal_handler(signal.SIGINT, stop)
    except (NotImplementedError, RuntimeError):  # no loop signal handlers (Windows)
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


__all__ = ["QueryRefusedError", "Replica"]
