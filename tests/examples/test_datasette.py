"""examples/datasette: Datasette serving the replica while `replica sync` writes to it.

One module-wide setup, as a user runs it: the emulator simulating runs, `replica sync` in
one process, `datasette replica.db --metadata examples/datasette/metadata.json` in another.
Pages are read over HTTP while rows change; a headless browser takes screenshots, which
replace the ones in docs/ only when `REPLICA_UPDATE_SCREENSHOTS=1` is set (a plain test run
leaves the tree as it was).
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

import replica
from replica.devserver import DevServer
from replica.devserver.taskrun import FINAL_STATUSES
from replica.devserver.testing import TEST_LONG_POLL_TIMEOUT
from tests.support.env import replica_env
from tests.support.waiting import PATIENCE, wait_for

from .browser import chromium, screenshot
from .helpers import (
    EXAMPLES,
    ROOT,
    Process,
    free_port,
    python,
    query,
    replica_command,
)

METADATA = EXAMPLES / "datasette" / "metadata.json"
SIMULATED_RUNS = 36
LOAD_TAG = "team:datasette-load"
#: Copy the screenshots into docs/ (else they stay in the test's temporary folder).
UPDATE_SCREENSHOTS = os.environ.get("REPLICA_UPDATE_SCREENSHOTS", "") not in ("", "0")
TAGS = ("user:1234", "org:acme", "team:datasette", LOAD_TAG)


@dataclass
class Live:
    server: DevServer
    db: Path
    base: str
    errors: list[str] = field(default_factory=list)

    def get(self, path: str, **params: str) -> Any:
        """GET a Datasette page; anything but a 200 with `ok` not false is an error."""
        response = httpx.get(self.base + path, params=params, timeout=15)
        if response.status_code != 200:
            self.errors.append(f"{path}: HTTP {response.status_code} {response.text[:300]}")
            return {}
        if not path.endswith(".json"):
            return response.text
        data = response.json()
        if isinstance(data, dict) and data.get("ok") is False:
            self.errors.append(f"{path}: {data.get('error')}")
        return data

    def rows(self, path: str, **params: str) -> list[dict[str, Any]]:
        return self.get(path, _shape="objects", **params).get("rows", [])

    def simulation_done(self) -> bool:
        runs = self.server.runs()
        return len(runs) >= SIMULATED_RUNS and all(r["status"] in FINAL_STATUSES for r in runs)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    cwd = tmp_path_factory.mktemp("datasette")
    db = cwd / "replica.db"
    replica.Replica(db).close()  # an empty replica (its tables), as before a first sync
    # Datasette first, so that the test reads pages while every simulated run is synced.
    port = free_port()
    # Never `-i`/immutable on a live replica: Datasette would cache counts and skip locking.
    args = ["serve", db.name, "--metadata", str(METADATA), "--host", "127.0.0.1"]
    datasette = Process(
        python("-m", "datasette", *args, "--port", str(port)), env=dict(os.environ), cwd=cwd
    )
    server = sync = None
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{base}/-/versions.json").status_code == 200, what="up")
        server = DevServer(
            simulate=True,
            seed=3,
            speed=4,
            simulate_interval=0.8,
            simulate_runs=SIMULATED_RUNS,
            long_poll_timeout=TEST_LONG_POLL_TIMEOUT,
        ).start()
        tags = [arg for tag in TAGS for arg in ("--tag", tag)]
        sync = Process(replica_command("sync", *tags), env=replica_env(server, db), cwd=cwd)
        yield Live(server, db, base)
        assert sync.stop() == 0, sync.stderr
    finally:
        for process in (datasette, sync):
            if process is not None:
                process.kill()
        if server is not None:
            server.stop(wait=False)


def runs_in_file(live: Live) -> int:
    return int(query(live.db, "SELECT count(*) FROM runs")[0][0])


def synced_runs(server: DevServer) -> int:
    """How many of the emulator's runs carry one of the synced tags."""
    tags = (set(str(r["runTags"]).strip("{}").split(",")) for r in server.runs())
    return sum(1 for run_tags in tags if run_tags & set(TAGS))


def png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


@pytest.mark.slow
@pytest.mark.timeout(900)  # a first run may install Chromium
def test_browser_screenshots_of_the_runs_table_and_a_canned_query(
    live: Live, tmp_path: Path
) -> None:
    browser = chromium()
    # Taken first, while simulated runs are still coming in (the other tests add their own).
    wait_for(lambda: runs_in_file(live) >= 12, what="enough runs to show")
    columns = ("task_identifier", "status", "tags", "created_at", "duration_ms")
    pages = {
        "screenshot-runs.png": "/replica/runs?" + "&".join(f"_col={c}" for c in columns),
        "screenshot-canned-query.png": "/replica/runs_for_tag?tag=user%3A1234",
    }
    for name, path in pages.items():
        html = live.get(path)  # what the browser will render has real rows
        assert "run_" in html, html[:500]
        shot = tmp_path / name
        screenshot(browser, live.base + path, shot, tmp_path / "profile")
        assert png_size(shot) == (1280, 900)
        # A blank or error page compresses to a few KB; a page of rows does not.
        assert shot.stat().st_size > 40_000, shot.stat().st_size
        if UPDATE_SCREENSHOTS:
            (ROOT / "docs" / name).write_bytes(shot.read_bytes())
    assert live.errors == []


def test_pages_and_canned_queries_follow_the_live_replica(live: Live) -> None:
    # While runs are made and `replica sync` writes them: every page answers, and what
    # Datasette counts lies between two direct reads of the file taken around it. Each
    # round adds a run of its own (canceled at once, so no simulated life is left running),
    # so rows change during the reads however fast or slow this machine is.
    counts = []
    deadline = time.monotonic() + PATIENCE
    while len(counts) < 12 or not live.simulation_done():
        assert time.monotonic() < deadline, "the simulation did not finish"
        live.server.cancel_run(live.server.trigger("load", {}, tags=[LOAD_TAG]))
        before = runs_in_file(live)
        shown = live.get("/replica/runs.json", _size="1")["filtered_table_rows_count"]
        after = runs_in_file(live)
        assert before <= shown <= after
        counts.append(shown)
        assert live.rows("/replica/runs_for_tag.json", tag="user:1234") is not None
        live.get("/replica/failed_last_24h.json")
        live.get("/replica/queue_time_percentiles.json")
        live.get("/replica/sync_status.json")
        assert "sorted by created_at descending" in live.get("/replica/runs")
        time.sleep(0.05)
    assert len(set(counts)) >= 3, f"too few changes seen while reading: {counts}"
    # Once the changes stop, Datasette shows every run the emulator holds for the tags.
    expected = synced_runs(live.server)
    wait_for(
        lambda: live.get("/replica/runs.json", _size="1")["filtered_table_rows_count"] == expected,
        what=f"Datasette to count {expected} runs",
    )
    assert live.errors == []


def test_canned_queries_and_facets_show_runs_with_known_fates(live: Live) -> None:
    wait_for(live.simulation_done, what="the simulation to finish")
    # Runs the simulator has no part in (it is done): each query shows exactly their fates.
    tag, task = "team:datasette", "datasette-check"
    error = {"type": "BUILT_IN_ERROR", "name": "Error", "message": "checked failure"}
    ours = [live.server.trigger(task, {"n": i}, tags=[tag]) for i in range(4)]
    wait_for(
        lambda: {r["id"] for r in live.rows("/replica/runs_for_tag.json", tag=tag)} == set(ours),
        what="Datasette to show the new runs",
    )
    for run_id in ours:
        live.server.start_run(run_id)
    for run_id in ours[:2]:
        live.server.fail_run(run_id, error)
    for run_id in ours[2:]:
        live.server.complete_run(run_id, {"ok": True})
    wait_for(
        lambda: (
            {r["status"] for r in live.rows("/replica/runs_for_tag.json", tag=tag)}
            == {"FAILED", "COMPLETED"}
        ),
        what="Datasette to show how they ended",
    )
    failed = {r["id"]: r for r in live.rows("/replica/failed_last_24h.json")}
    assert set(ours[:2]) <= set(failed) and not set(ours[2:]) & set(failed)
    assert failed[ours[0]]["error_message"] == "checked failure"
    percentiles = {r["task"]: r for r in live.rows("/replica/queue_time_percentiles.json")}
    assert percentiles[task]["runs"] == 4
    mine = percentiles[task]
    assert 0 <= mine["p50_ms"] <= mine["p90_ms"] <= mine["p99_ms"] <= mine["max_ms"]

    table = live.get("/replica/runs.json", _size="1")
    facets = table["facet_results"]
    assert set(facets) == {"status", "task_identifier", "tags"}  # from metadata.json
    tasks = {item["value"]: item["count"] for item in facets["task_identifier"]["results"]}
    assert tasks[task] == 4
    assert table["filtered_table_rows_count"] == runs_in_file(live)
    by_tag = live.get("/replica/runs.json", tags__arraycontains=tag, _size="1")
    assert by_tag["filtered_table_rows_count"] == 4  # the array filter docs/datasette.md shows

    shapes = live.rows("/replica/sync_status.json")
    assert sorted(s["shape"] for s in shapes) == sorted(f"tag {t}" for t in TAGS)
    assert {s["state"] for s in shapes} == {"live"}

    tables = {t["name"]: t for t in live.get("/replica.json")["tables"]}
    assert all(t["hidden"] for name, t in tables.items() if name.startswith("_replica_"))
    assert not any(tables[name]["hidden"] for name in ("runs", "run_tags", "run_history"))
    assert live.errors == []


def test_the_metadata_hides_every_internal_table_of_a_fresh_replica(tmp_path: Path) -> None:
    replica.Replica(tmp_path / "replica.db").close()
    conn = sqlite3.connect(tmp_path / "replica.db")
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    tables = json.loads(METADATA.read_text())["databases"]["replica"]["tables"]
    internal = {name for name in names if name.startswith("_replica_")}
    unhidden = sorted(name for name in internal if not tables.get(name, {}).get("hidden"))
    assert internal and not unhidden, f"add {unhidden} to {METADATA} with hidden: true"
