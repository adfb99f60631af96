"""`DevServer`: the emulator as a Python object, served by uvicorn on a background thread.

with DevServer(long_poll_timeout=0.5) as server:        # free port on 127.0.0.1
    server.define_table("items", {"id": "int4", "title": "text"}, primary_key="id")
    server.insert("items", {"id": 1, "title": "hello"})
    run_id = server.trigger("send-email", {"to": "a@b.c"}, tags=["user:1234"])
    server.complete_run(run_id, output={"ok": True})
    ...  # point clients at server.url with server.secret_key
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import signal
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import uvicorn

from replica.devserver.app import create_app
from replica.devserver.auth import public_token
from replica.devserver.config import DevServerConfig
from replica.devserver.emulator import Emulator
from replica.devserver.faults import FaultRule, make_rule, parse_fault_spec
from replica.devserver.request_counts import RequestTally
from replica.devserver.tables import Row, Table, Transaction, TransactionBuilder

log = logging.getLogger(__name__)


#: Background stops still running; joined at exit so temporary files are removed.
_PENDING_STOPS: list[threading.Thread] = []


@atexit.register
def _join_pending_stops() -> None:
    for stopper in _PENDING_STOPS:
        stopper.join(timeout=5)


class _Server(uvicorn.Server):
    """uvicorn, but a shutdown signal also answers pending long-polls at once."""

    def __init__(self, config: uvicorn.Config, emulator: Emulator) -> None:
        super().__init__(config)
        self.emulator = emulator

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.emulator.closing = True
        self.emulator.wake_all()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Like uvicorn's, minus re-raising the signal afterwards: SIGINT/SIGTERM are the
        # normal way to stop the dev-server, so it exits 0 after a clean shutdown.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def make_uvicorn(app: Any, emulator: Emulator, log_level: str = "warning") -> uvicorn.Server:
    """A uvicorn server for `app` (httptools, no access log, quick graceful shutdown)."""
    config = uvicorn.Config(
        app,
        log_level=log_level,
        lifespan="on",
        loop="asyncio",
        http="httptools",
        timeout_graceful_shutdown=2,
        access_log=False,
    )
    return _Server(config, emulator)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 = a free one); OSError if the address is taken."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this: without it Nagle's algorithm holds the body that
    # follows the headers until the client's delayed ACK (~40 ms added to every reply).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class DevServer:
    """A running (or ready to run) emulator of Electric and Trigger.dev Realtime.

    Keyword arguments override fields of `config` (see `DevServerConfig`). All methods are
    thread-safe and may be called while the server runs.
    """

    def __init__(self, config: DevServerConfig | None = None, **overrides: Any) -> None:
        base = config or DevServerConfig()
        self.config = dataclasses.replace(base, **overrides) if overrides else base
        self.emulator = Emulator(self.config)
        self.app = create_app(self.emulator)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.url = ""

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> DevServer:
        """Serve on `config.host:config.port` (0 = a free port) in a daemon thread."""
        if self._thread is not None:
            return self
        sock = bind_socket(self.config.host, self.config.port)
        self._socket = sock
        self.url = url_of(sock)
        self._server = make_uvicorn(self.app, self.emulator)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name="replica-devserver",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("replica dev-server did not start")
            time.sleep(0.01)
        log.info("dev-server listening on %s", self.url)
        return self

    def stop(self, *, wait: bool = True) -> None:
        """Stop serving (long-polls are answered at once) and remove temporary files.

        uvicorn takes ~0.2 s to shut down; with `wait=False` that happens on a background
        thread (the port and files are released shortly after), which test fixtures use.
        """
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None and thread is not None:
            self.emulator.closing = True
            self.emulator.wake_all()
            server.should_exit = True
        if wait or thread is None:
            self._finish(thread)
        else:
            stopper = threading.Thread(
                target=self._finish, args=(thread,), name="replica-devserver-stop", daemon=True
            )
            stopper.start()
            _PENDING_STOPS.append(stopper)

    def _finish(self, thread: threading.Thread | None) -> None:
        if thread is not None:
            thread.join(timeout=10)
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None
        self.emulator.close()

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def secret_key(self) -> str:
        return self.config.secret_key

    @property
    def environment_id(self) -> str:
        return self.emulator.environment_id

    @property
    def lsn(self) -> int:
        """The LSN of the last committed transaction."""
        return self.emulator.db.lsn

    # -- plain Electric tables ----------------------------------------------------------

    def define_table(
        self,
        name: str,
        columns: Mapping[str, str] | Sequence[tuple[str, str]],
        primary_key: Sequence[str] | str = (),
        *,
        schema: str = "public",
        not_null: Sequence[str] = (),
    ) -> Table:
        """Create a table: `{"id": "int4", "tags": "text[]"}`, primary key columns."""
        return self.emulator.db.define_table(
            name, columns, primary_key, schema=schema, not_null=not_null
        )

    def transaction(self) -> TransactionBuilder:
        """`with server.transaction() as tx: tx.insert(...); tx.update(...)` = one LSN."""
        return self.emulator.db.transaction()

    def insert(self, table: str, *rows: Mapping[str, Any]) -> Transaction | None:
        """Insert rows (Python values or Postgres text forms) in one transaction."""
        tx = self.transaction()
        for row in rows:
            tx.insert(table, row)
        return tx.commit()

    def update(
        self, table: str, key: Mapping[str, Any], values: Mapping[str, Any]
    ) -> Transaction | None:
        """Update the row whose primary key is `key` (values may change the key)."""
        return self.transaction().update(table, key, values).commit()

    def delete(self, table: str, key: Mapping[str, Any]) -> Transaction | None:
        return self.transaction().delete(table, key).commit()

    def rows(self, table: str) -> list[Row]:
        """Every row of a table as stored (column -> Postgres text form)."""
        db = self.emulator.db
        return db.rows(db.table(table))

    # -- runs ---------------------------------------------------------------------------

    def trigger(self, task: str, payload: Any = None, **options: Any) -> str:
        """Trigger a run like `POST /api/v1/tasks/{task}/trigger`; returns its `run_...` id.

        `options` are the API's: `tags`, `metadata`, `payloadType`, `delay`, `ttl`,
        `idempotencyKey`, `test`, `maxAttempts`, `queue`.
        """
        return self.emulator.runs.trigger(task, payload, options).id

    def trigger_many(
        self, items: Iterable[Mapping[str, Any]], *, per_transaction: int = 5000
    ) -> list[str]:
        """Bulk-load runs (`{task, payload, options}` items) for benchmarks: one transaction
        per `per_transaction` runs, no idempotency checks; returns the run ids."""
        return self.emulator.runs.trigger_many(items, per_transaction=per_transaction)

    def batch_trigger(self, items: Sequence[Mapping[str, Any]]) -> tuple[str, list[str]]:
        """Trigger `[{task, payload, options}]` as a batch; returns (batch id, run ids)."""
        batch, runs = self.emulator.runs.batch_trigger(items)
        return str(batch["friendlyId"]), [str(r["friendlyId"]) for r in runs]

    def run(self, run_id: str) -> Row | None:
        """The raw `TaskRun` row of a run (text forms), or None."""
        return self.emulator.runs.get(run_id)

    def runs(self) -> list[Row]:
        """Every raw `TaskRun` row."""
        return self.emulator.runs.all()

    def set_status(self, run_id: str, status: str, **values: Any) -> Row:
        """Move a run to a DB status (`EXECUTING`, `CRASHED`, ...), filling timestamps."""
        return self.emulator.runs.transition(run_id, status, **values)

    def start_run(self, run_id: str) -> Row:
        return self.set_status(run_id, "EXECUTING")

    def complete_run(self, run_id: str, output: Any = None, output_type: str | None = None) -> Row:
        return self.emulator.runs.complete(run_id, output, output_type)

    def fail_run(
        self,
        run_id: str,
        error: Mapping[str, Any] | None = None,
        status: str = "COMPLETED_WITH_ERRORS",
    ) -> Row:
        return self.emulator.runs.fail(run_id, error, status)

    def cancel_run(self, run_id: str) -> Row:
        return self.emulator.runs.cancel(run_id)

    def update_run(self, run_id: str, **values: Any) -> Row:
        """Set any `TaskRun` columns (bumps `updatedAt`)."""
        return self.emulator.runs.update(run_id, **values)

    def set_metadata(
        self,
        run_id: str,
        metadata: Mapping[str, Any] | None = None,
        operations: Sequence[Any] | None = None,
    ) -> dict[str, Any]:
        return self.emulator.runs.set_metadata(run_id, metadata, operations)

    def public_token(
        self,
        scopes: Sequence[str],
        *,
        expires_in: float = 3600,
        skip_columns: Sequence[str] | None = None,
    ) -> str:
        """A public access token (JWT) with these scopes, e.g. `["read:tags:user:1234"]`."""
        return public_token(
            self.secret_key,
            self.environment_id,
            scopes,
            expires_in=expires_in,
            skip_columns=skip_columns,
        )

    # -- shapes and faults --------------------------------------------------------------

    def shapes(self) -> list[dict[str, Any]]:
        """Every live shape: handle, table, where, rows, offsets."""
        return [self.emulator.shape_info(s) for s in self.emulator.registry.shapes()]

    def rotate(self, handle: str | None = None, table: str | None = None) -> list[str]:
        """Retire shape handles so their clients get 409 (all shapes if no argument)."""
        return self.emulator.rotate(handle=handle, table=table)

    def add_fault(self, kind_or_spec: str, **options: Any) -> FaultRule:
        """Arm a fault: `add_fault("error", status=503, times=2)` or a spec `"delay:seconds=1"`."""
        if ":" in kind_or_spec and not options:
            return self.emulator.faults.add(parse_fault_spec(kind_or_spec))
        return self.emulator.faults.add(make_rule(kind_or_spec, options))

    def clear_faults(self) -> None:
        self.emulator.faults.clear()

    # -- time and remembered windows ------------------------------------------------------

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator's clock forward: run timestamps, tag windows and the ages of
        remembered handle windows and working sets follow it (not token expiry)."""
        self.emulator.clock.advance(seconds)

    def handle_windows(self) -> list[dict[str, Any]]:
        """Electric backend: the remembered tag windows (`handle`, `created_at_floor`, `age`)."""
        return self.emulator.handle_window_info()

    def forget_handle_windows(self, handle: str | None = None) -> int:
        """Electric backend: forget one handle's tag window (or all), as the webapp's cache
        does after `handle_window_ttl`; returns how many were forgotten."""
        return self.emulator.handle_windows.forget(handle)

    def request_counts(self) -> RequestTally:
        """Shape requests answered since the last reset: `counts[route][kind or status]`
        (`initial`, `catch-up`, `live`; `304`, `409`, `429`, ...) and `live_peak[route]`."""
        return self.emulator.requests.tally()

    def reset_request_counts(self) -> RequestTally:
        """Count afresh from now; returns the counts until now."""
        return self.emulator.requests.reset()

    @contextlib.contextmanager
    def fault(self, kind: str, **options: Any) -> Iterator[FaultRule]:
        """A fault armed for the duration of a `with` block."""
        rule = self.add_fault(kind, **options)
        try:
            yield rule
        finally:
            self.emulator.faults.remove(rule.id)
