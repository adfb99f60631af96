"""Eight reader processes and Datasette query the replica while `replica sync` writes it as
fast as the upstream feeds it: not one "database is locked" (nor any other error), and a
second writer is refused with a clear error while the first one runs.

The readers start before the sync. The upstream first serves a large snapshot (staged in
big write transactions, published in one), then a thread triggers runs in bulk and updates
others one by one, as fast as it can, until the sync has logged `LIVE_CHANGES` changes
after the snapshot. Every step waits for a state, so a slow machine only takes longer.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from replica import Replica
from tests.support.env import replica_env
from tests.support.waiting import wait_for

from .support import (
    ROOT,
    query,
    record,
    replica_command,
    scaled,
    sigkill,
    spawn,
)

SNAPSHOT_ROWS = scaled(20000, 60000)
#: Change-log entries the sync must write after the snapshot while everyone reads.
LIVE_CHANGES = scaled(3000, 100_000)
READERS = [
    "sqlite3",
    "sqlite3",
    "sqlite3",
    "readonly",
    "readonly",
    "readonly",
    "replica",
    "replica",
]
DATASETTE_PATHS = [
    "/replica/runs.json?_size=20&_sort_desc=updated_at",
    "/replica.json?sql=select+status,+count(*)+from+runs+group+by+status",
    "/replica/runs.json?status=EXECUTING&_size=5",
    "/replica/_replica_changes.json?_size=10&_sort_desc=seq",
    "/replica.json?sql=select+count(*)+from+run_tags",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Feed:
    """The upstream at full speed: bulk triggers and single updates, from a thread."""

    def __init__(self, server: Any, ids: list[str]) -> None:
        self.server = server
        self.ids = ids
        self.stop = threading.Event()
        self.triggered = self.updated = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        n = 0
        while not self.stop.is_set():
            items = [
                {"task": "burst", "payload": {"n": n + i}, "options": {"tags": ["load"]}}
                for i in range(300)
            ]
            self.ids += self.server.trigger_many(items, per_transaction=300)
            self.triggered += len(items)
            n += len(items)
            for run_id in self.ids[-2000::40]:
                self.server.update_run(run_id, metadata=json.dumps({"n": n}))
                self.updated += 1


def answers(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def hammer_datasette(url: str, stop: threading.Event, results: Counter[str]) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        i = 0
        while not stop.is_set():
            path = DATASETTE_PATHS[i % len(DATASETTE_PATHS)]
            i += 1
            try:
                response = client.get(path)
            except httpx.HTTPError as exc:
                results[f"{type(exc).__name__}: {exc}"] += 1
                continue
            if response.status_code != 200 or "locked" in response.text:
                results[f"HTTP {response.status_code}: {response.text[:200]}"] += 1
            else:
                results["ok"] += 1


def started(reader: subprocess.Popen[str]) -> None:
    assert reader.stdout is not None
    line = reader.stdout.readline()
    assert line.strip() == "ready", (line, reader.stderr.read() if reader.stderr else "")


def counts(db: Path) -> tuple[int, int]:
    """(rows in `runs`, the change log's last seq)."""
    return query(
        db,
        "SELECT (SELECT count(*) FROM runs), (SELECT coalesce(max(seq), 0) FROM _replica_changes)",
    )[0]


def syncing(sync: subprocess.Popen[Any], log: Path) -> bool:
    """True while `replica sync` runs; a sync that died fails the test at once."""
    assert sync.poll() is None, log.read_text()[-3000:]
    return True


def all_answered(datasette: Counter[str]) -> bool:
    """True while Datasette answered every request; a failed one fails the test at once."""
    assert set(datasette) <= {"ok"}, datasette
    return True


@pytest.mark.slow
@pytest.mark.timeout(scaled(900, 1800))
def test_readers_and_datasette_never_see_a_locked_database(
    tmp_path: Path, devserver_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = devserver_factory(chunk_rows=2000)
    ids = server.trigger_many(
        (
            {"task": "seed", "payload": {"n": n, "pad": "x" * 300}, "options": {"tags": ["load"]}}
            for n in range(SNAPSHOT_ROWS)
        ),
        per_transaction=5000,
    )
    db = tmp_path / "replica.db"
    Replica(db).close()  # its tables, as before a first sync: the readers start first
    env = replica_env(server, db)
    stop_readers = tmp_path / "stop"
    procs: list[subprocess.Popen[Any]] = []
    feed = Feed(server, ids)
    stop = threading.Event()
    datasette_results: Counter[str] = Counter()
    try:
        # Every reader and Datasette are reading before the sync starts, so they read
        # through all of it, however fast or slow this machine is: the snapshot staged
        # page by page, published in one large transaction, then the live changes.
        port = free_port()
        procs.append(
            spawn(
                [sys.executable, "-m", "datasette", "serve", str(db), "-p", str(port)],
                cwd=tmp_path,
                env=env,
                log=tmp_path / "datasette.log",
            )
        )
        readers = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "tests/reliability/reader.py"),
                    str(db),
                    str(stop_readers),
                    way,
                ],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for way in READERS
        ]
        procs += readers
        for reader in readers:
            started(reader)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(url + "/-/versions.json"), what="datasette")
        hammer = threading.Thread(target=hammer_datasette, args=(url, stop, datasette_results))
        hammer.start()
        sync_log = tmp_path / "sync.log"
        sync = spawn(replica_command("sync", "--tag", "load"), cwd=tmp_path, env=env, log=sync_log)
        procs.append(sync)
        wait_for(
            lambda: (
                syncing(sync, sync_log)
                and all_answered(datasette_results)
                and query(db, "SELECT phase FROM _replica_shapes") == [("live",)]
            ),
            timeout=scaled(600, 1200),
            what="the snapshot to be published",
        )
        # The window: from the published snapshot, live writes as fast as the upstream
        # makes them, until enough of them are in (a state, not a duration).
        started_at = time.monotonic()
        rows_before, log_before = counts(db)
        feed.thread.start()

        # A second writer, while the first one writes: refused, one clear line, exit 1.
        refusals = {}
        for args in (("sync", "--tag", "load", "--once"), ("reset", "--all")):
            second = subprocess.run(
                replica_command(*args), cwd=tmp_path, env=env, capture_output=True, text=True
            )
            assert second.returncode == 1, second.stderr
            assert f"another replica process (pid {sync.pid}) is already writing" in second.stderr
            assert "Traceback" not in second.stderr
            refusals[args[0]] = second.stderr.strip().splitlines()[-1]

        wait_for(
            lambda: (
                syncing(sync, sync_log)
                and all_answered(datasette_results)
                and counts(db)[1] - log_before >= LIVE_CHANGES
            ),
            timeout=scaled(600, 1800),
            what=f"{LIVE_CHANGES} live changes",
        )
        stop_readers.touch()
        reports = []
        for reader in readers:
            out, err = reader.communicate(timeout=120)
            assert reader.returncode == 0, err
            reports.append(json.loads(out.strip().splitlines()[-1]))
        stop.set()
        feed.stop.set()
        hammer.join(60)
        feed.thread.join(60)
        elapsed = time.monotonic() - started_at
        syncing(sync, sync_log)
        rows_after, log_after = counts(db)
    finally:
        stop_readers.touch()
        stop.set()
        feed.stop.set()
        for proc in procs:
            sigkill(proc)

    reader_errors: Counter[str] = Counter()
    for report in reports:
        reader_errors.update(report["errors"])
    locked = sum(
        n for text, n in {**reader_errors, **datasette_results}.items() if "locked" in text
    )
    queries = sum(report["queries"] for report in reports)
    record(
        "concurrency",
        seconds=round(elapsed),
        reader_processes=len(READERS),
        reader_queries=queries,
        datasette_requests=sum(datasette_results.values()),
        database_is_locked=locked,
        other_errors=sum(reader_errors.values())
        + sum(n for text, n in datasette_results.items() if text != "ok"),
        rows_written=rows_after - rows_before,
        changes_logged=log_after - log_before,
        second_writer_refused=len(refusals),
    )
    assert reader_errors == Counter(), reader_errors
    assert set(datasette_results) == {"ok"}, datasette_results
    assert all(report["queries"] > 10 for report in reports), reports
    assert rows_after > rows_before and log_after > log_before
    with capsys.disabled():
        print(
            f"\nconcurrency: {queries} reader queries, {datasette_results['ok']} Datasette "
            f"requests, {log_after - log_before} changes written in {elapsed:.0f} s; {refusals}"
        )
