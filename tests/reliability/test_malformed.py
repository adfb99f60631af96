"""A malformed upstream body never half-applies and always yields a typed, logged error.

The real engine and store follow a scripted Electric server (real sockets). Good pages
come first (a snapshot split in two, published), then the server answers every further
request with a malformed page, in the middle of a snapshot or live. The store must be
exactly as it was before that page (rows, change log, position, staged pages), the error
must be logged with the shape's name, and the shape's status must say `backing-off` with
the error. Hypothesis makes the malformed pages by mutating good ones (when a mutation
happens to be valid, the page must instead be applied whole); a table of hand-made cases
covers each kind of damage, also through `replica sync` and `replica status`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import replica
from replica.engine import Engine
from replica.protocol.backoff import Backoff
from replica.sources.subscriptions import sources_for
from replica.store import Store
from tests.support.scripted_server import (
    Reply,
    Request,
    ScriptedServer,
    change,
    shape_reply,
)
from tests.support.waiting import wait_for, wait_for_async

from .support import record, replica_command, scaled
from .test_fuzz import mutate_bytes, mutate_tree

BAD_OFFSET = "9_0"


def first_page() -> Reply:
    return shape_reply([change(i, id=str(i), title=f"t{i}", done="f") for i in (1, 2, 3)])


def second_page() -> Reply:
    return shape_reply(
        [change(i, id=str(i), title=f"t{i}", done="t") for i in (4, 5)],
        offset="0_1",
        done=True,
    )


def live_page() -> Reply:
    """A valid live page: one insert, one update (with old values), one delete."""
    return shape_reply(
        [
            change(6, id="6", title="new", done="f"),
            change(1, "update", id="1", title="renamed"),
            change(2, "delete", id="2"),
        ],
        offset=BAD_OFFSET,
        cursor="2",
        done=True,
    )


class Server:
    """Good pages up to `where` ("snapshot": after the first page, "live": after the
    snapshot), then, for every request, a page holding `body` with its headers changed by
    `header_changes` (name -> value, None to leave the header out). Once the client has
    taken that page and asks for the next one (`moved_on`), it gets no answer."""

    def __init__(self, where: str, body: Any, header_changes: dict[str, str | None]) -> None:
        self.where = where
        self.body = body
        self.header_changes = header_changes
        self.served_bad = 0
        self.moved_on = False
        self.before_bad: Callable[[], None] | None = None

    def __call__(self, request: Request) -> Reply:
        offset = request.params.get("offset")
        if offset == BAD_OFFSET:
            # The damaged page was taken: nothing follows it, so the store stays as that
            # page left it until the test has looked, however slowly (served again, an
            # empty page would loop until the shape is fetched from scratch).
            self.moved_on = True
            return Reply(hang=True)
        if offset == "-1":
            return first_page()
        if offset == "0_0" and self.where == "live":
            return second_page()
        if not self.served_bad and self.before_bad is not None:
            self.before_bad()
        self.served_bad += 1
        live = request.params.get("live") == "true"
        # As the server would send it for this request: a live reply has a cursor, the
        # others the schema; a live shape's pages end at an up-to-date.
        reply = shape_reply(
            offset=BAD_OFFSET, cursor="2" if live else None, done=self.where == "live"
        )
        reply.body = self.body
        for name, value in self.header_changes.items():
            name = name.replace("_", "-")
            if value is None:
                reply.headers.pop(name, None)
            else:
                reply.headers[name] = value
        return reply


def state(db: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        items = "SELECT * FROM items ORDER BY id"
        return {
            "items": conn.execute(items).fetchall() if "items" in tables else [],
            "log": conn.execute("SELECT * FROM _replica_changes ORDER BY seq").fetchall(),
            "position": conn.execute(
                'SELECT handle, "offset", position, phase, generation, rows FROM _replica_shapes'
            ).fetchall(),
            "pending": conn.execute("SELECT * FROM _replica_pending ORDER BY id").fetchall(),
        }
    finally:
        conn.close()


def stored_status(db: Path) -> tuple[str, str | None]:
    """The shape's (state, last_error) as `replica status` shows it."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT state, last_error FROM _replica_shapes").fetchone()
    finally:
        conn.close()


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def follow_until_settled(db: Path, server: Server) -> tuple[dict[str, Any], Any, Engine, int]:
    """Run the engine until the bad page was taken or refused; return the store's state
    just before the bad page was first served, the shape's stored status, the engine and
    the change messages it received since then."""
    before: dict[str, Any] = {}
    received: list[int] = []

    def before_bad() -> None:
        before.update(state(db))
        received.append(engine.progress[source.key].received)

    server.before_bad = before_bad
    async with ScriptedServer(server) as upstream, httpx.AsyncClient() as client:
        (source,) = sources_for([replica.electric(upstream.url, "items")], client)
        with Store(db) as store:
            engine = Engine(store, client, retry=Backoff(initial=0.05, maximum=0.1))
            task = asyncio.create_task(engine.run([source], until_stopped=True))

            def settled() -> bool:
                if task.done():  # an exception escaping the engine fails the test
                    raise AssertionError("the engine ended") from task.exception()
                progress = engine.progress.get(source.key)
                if not before or progress is None:
                    return False
                if progress.state == "backing-off":
                    return stored_status(db)[0] == "backing-off"  # as `replica status` shows
                return server.moved_on  # the page is behind it (written, if it had to be)

            try:
                await wait_for_async(settled, what="the page to be applied or refused")
            finally:
                engine.stop()
                await task
            shape = store.shapes()[0]
    return before, shape, engine, engine.progress[source.key].received - received[0]


def check_case(server: Server) -> str:
    """Follow `server` until its bad page was applied or refused; check all-or-nothing.
    Returns "refused" or "applied"."""
    handler = Captured()
    logging.getLogger("replica").addHandler(handler)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "replica.db"
            before, shape, engine, received = asyncio.run(follow_until_settled(db, server))
            after = state(db)
    finally:
        logging.getLogger("replica").removeHandler(handler)
    if server.moved_on:
        if after["position"][0][1] == BAD_OFFSET:
            # The damage left a valid page: it is applied whole, in one transaction.
            assert len(after["log"]) >= len(before["log"])
        else:
            # A valid page without changes (a live keep-alive) moves on without a write.
            assert received == 0 and after == before, (received, after, before)
        return "applied"
    assert after == before, "a refused page changed the store"
    assert shape.state == "backing-off", shape
    assert shape.last_error, shape
    assert engine.failed == {}
    logged = [m for m in handler.messages if "items" in m and "retrying in" in m]
    assert logged, handler.messages
    assert shape.last_error.split(" (")[0][:60] in "".join(logged)
    return "refused"


# -- hand-made damage -------------------------------------------------------------------------

GOOD_LIVE = live_page().body
CASES: dict[str, tuple[Any, dict[str, str | None]]] = {
    "not JSON": (b'[{"key": "\\"public\\".\\"items\\"/\\"6\\"", "value": {', {}),
    "not an array": ({"key": "x"}, {}),
    "message not an object": ([change(6, id="6", title="x"), 42], {}),
    "no headers": ([{"key": '"public"."items"/"6"', "value": {"id": "6"}}], {}),
    "unknown operation": ([change(6, "upsert", id="6", title="x")], {}),
    "key not a string": ([{**change(6, id="6"), "key": 6}], {}),
    "value not an object": ([{**change(6, id="6"), "value": ["6"]}], {}),
    "int4 that does not parse": ([change(6, id="6"), change(7, id="seven")], {}),
    "bool that does not parse": ([change(6, id="6", done="maybe")], {}),
    "value of the wrong JSON type": ([change(6, id=6)], {}),
    "null primary key": ([change(6, id=None, title="x")], {}),
    "control not a string": ([{"headers": {"control": 1}}], {}),
    "bad offset header": (GOOD_LIVE, {"electric_offset": "soon"}),
    "no offset header": (GOOD_LIVE, {"electric_offset": None}),
    "no handle header": (GOOD_LIVE, {"electric_handle": None}),
    "lsn of the wrong type": (
        [change(6, id="6"), {"headers": {"control": "up-to-date", "global_last_seen_lsn": []}}],
        {},
    ),
}


@pytest.mark.parametrize("where", ["snapshot", "live"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_malformed_page_changes_nothing_and_is_reported(case: str, where: str) -> None:
    body, headers = CASES[case]
    outcome = check_case(Server(where, body, headers))
    assert outcome == "refused", case
    record("malformed pages", hand_made_cases_refused=1)


# -- mutated pages ------------------------------------------------------------------------------

COUNTS = {"applied": 0, "refused": 0}


@settings(
    max_examples=scaled(40, 400),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), where=st.sampled_from(["snapshot", "live"]))
def test_mutated_pages_apply_whole_or_not_at_all(data: st.DataObject, where: str) -> None:
    raw = json.dumps(live_page().body).encode()
    if data.draw(st.booleans(), label="bytes or tree"):
        body: Any = mutate_bytes(data, raw)
    else:
        body = json.dumps(mutate_tree(data, json.loads(raw))).encode()
    outcome = check_case(Server(where, body, {}))
    COUNTS[outcome] += 1


def test_mutation_figures() -> None:
    record(
        "malformed pages",
        mutated_pages_refused=COUNTS["refused"],
        mutated_pages_applied_whole=COUNTS["applied"],
    )


# -- through the command line -------------------------------------------------------------


class ThreadedServer:
    """A ScriptedServer on its own event loop thread, for `replica` subprocesses."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.url = ""
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            async with ScriptedServer(self.handler) as server:
                self.url = server.url
                self.stop = asyncio.Event()
                self.ready.set()
                await self.stop.wait()

        self.loop.run_until_complete(main())

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self._thread.join(10)


@pytest.fixture
def cli_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRIGGER_", "ELECTRIC_"))}
    env["REPLICA_DB"] = str(tmp_path / "replica.db")
    return env


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "where"),
    [("int4 that does not parse", "live"), ("not JSON", "snapshot"), ("unknown operation", "live")],
)
def test_replica_sync_reports_a_malformed_page_in_its_log_and_status(
    tmp_path: Path, cli_env: dict[str, str], case: str, where: str
) -> None:
    body, headers = CASES[case]
    server = Server(where, body, headers)
    db = tmp_path / "replica.db"
    with ThreadedServer(server) as upstream:
        proc = subprocess.Popen(
            replica_command("sync", "--electric", upstream.url, "--table", "items"),
            cwd=tmp_path,
            env=cli_env,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: server.served_bad >= 1, what="the malformed page to be served")
            status = wait_for(
                lambda: [
                    s
                    for s in json.loads(
                        subprocess.run(
                            replica_command("status", "--json"),
                            cwd=tmp_path,
                            env=cli_env,
                            capture_output=True,
                            text=True,
                        ).stdout
                    )
                    if s["state"] == "backing-off" and s["last_error"]
                ],
                what="status to show the error",
            )
            snapshot = state(db)
        finally:
            proc.terminate()
            _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert status[0]["shape"] == "items"
    assert "retrying in" in stderr and status[0]["last_error"].split(" (")[0] in stderr
    assert "Traceback" not in stderr
    expected_rows = 5 if where == "live" else 0
    assert len(snapshot["items"]) == expected_rows
    assert len(snapshot["log"]) == expected_rows
    record("malformed pages", cli_cases_reported_in_status=1)
