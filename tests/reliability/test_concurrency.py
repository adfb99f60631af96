"""Eight reader processes and Datasette query the replica while `replica sync` writes it as
fast as the upstream feeds it: not one "database is locked" (nor any other error), and a
second writer is refused with a clear error while the first one runs.

The upstream first serves a large snapshot (big write transactions), then a thread
triggers runs in bulk and updates others one by one, as fast as it can, until the end.
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

SECONDS = scaled(15, 120)
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


@pytest.mark.slow
@pytest.mark.timeout(SECONDS + 240)
def test_readers_and_datasette_never_see_a_locked_database(
    tmp_path: Path, devserver_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = devserver_factory(chunk_rows=2000)
    ids = server.trigger_many(
        (
            {"task": "seed", "payload": {"n": n, "pad": "x" * 300}, "options": {"tags": ["load"]}}
            for n in range(scaled(20000, 60000))
        ),
        per_transaction=5000,
    )
    db = tmp_path / "replica.db"
    env = replica_env(server, db)
    sync = spawn(
        replica_command("sync", "--tag", "load"), cwd=tmp_path, env=env, log=tmp_path / "sync.log"
    )
    procs: list[subprocess.Popen[Any]] = [sync]
    feed = Feed(server, ids)
    stop = threading.Event()
    datasette_results: Counter[str] = Counter()
    try:
        wait_for(lambda: query(db, "SELECT count(*) FROM _replica_shapes")[0][0], 60, "the sync")
        port = free_port()
        datasette = spawn(
            [sys.executable, "-m", "datasette", "serve", str(db), "-p", str(port)],
            cwd=tmp_path,
            env=env,
            log=tmp_path / "datasette.log",
        )
        procs.append(datasette)
        readers = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "tests/reliability/reader.py"),
                    str(db),
                    str(SECONDS),
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
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(url + "/-/versions.json"), 60, "datasette")
        hammer = threading.Thread(target=hammer_datasette, args=(url, stop, datasette_results))
        hammer.start()
        feed.thread.start()
        started = time.monotonic()
        rows_before = query(db, "SELECT count(*) FROM runs")[0][0]
        log_before = query(db, "SELECT coalesce(max(seq), 0) FROM _replica_changes")[0][0]

        # A second writer, while the first one writes: refused, one clear line, exit 1.
        time.sleep(SECONDS / 3)
        refusals = {}
        for args in (("sync", "--tag", "load", "--once"), ("reset", "--all")):
            second = subprocess.run(
                replica_command(*args), cwd=tmp_path, env=env, capture_output=True, text=True
            )
            assert second.returncode == 1, second.stderr
            assert f"another replica process (pid {sync.pid}) is already writing" in second.stderr
            assert "Traceback" not in second.stderr
            refusals[args[0]] = second.stderr.strip().splitlines()[-1]

        reports = []
        for reader in readers:
            out, err = reader.communicate(timeout=SECONDS + 60)
            assert reader.returncode == 0, err
            reports.append(json.loads(out.strip().splitlines()[-1]))
        stop.set()
        feed.stop.set()
        hammer.join(30)
        feed.thread.join(30)
        elapsed = time.monotonic() - started
        assert sync.poll() is None, (tmp_path / "sync.log").read_text()[-3000:]
        rows_after = query(db, "SELECT count(*) FROM runs")[0][0]
        log_after = query(db, "SELECT coalesce(max(seq), 0) FROM _replica_changes")[0][0]
    finally:
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
