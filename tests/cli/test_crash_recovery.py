"""SIGKILL at random moments of a large snapshot and of live churn: nothing lost, nothing twice.

A `replica sync` subprocess is killed again and again while the emulator keeps changing
runs; after a final catch-up the replica must equal the upstream row by row, and the change
log must tell each run's story exactly once: one insert, then strictly advancing updates.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from typing import Any

import pytest

from replica.sources.taskrun import iso_timestamp, public_status

from .conftest import Replica

KILLS = int(os.environ.get("REPLICA_CRASH_KILLS", "12"))
RUNS = 3000


def _churn(server: Any, ids: list[str], stop: threading.Event, seed: int) -> int:
    rng = random.Random(seed)
    changes = 0
    while not stop.is_set():
        run_id = rng.choice(ids)
        if rng.random() < 0.5:
            server.update_run(run_id, metadata=json.dumps({"progress": rng.random()}))
        else:
            server.set_status(run_id, rng.choice(["EXECUTING", "WAITING_TO_RESUME", "DEQUEUED"]))
        changes += 1
        time.sleep(0.01)
    return changes


@pytest.mark.slow
def test_sigkill_during_snapshot_and_churn_loses_nothing(
    tmp_path: Any, devserver_factory: Any
) -> None:
    server = devserver_factory(chunk_rows=100)
    cli = Replica(tmp_path, server)
    ids = server.trigger_many(
        {
            "task": "import-csv",
            "payload": {"row": i, "pad": "x" * 200},
            "options": {"tags": ["big"]},
        }
        for i in range(RUNS)
    )
    rng = random.Random(20261128)
    server.add_fault("delay", live=False, seconds=0.05)
    stop = threading.Event()
    churner: threading.Thread | None = None
    killed_in_snapshot = 0
    try:
        for kill in range(KILLS):
            proc = cli.start("sync", "--tag", "big")
            if kill < KILLS // 3:
                # The first kills land in the initial snapshot (30 pages, each held back
                # 50 ms by the emulator): once a random number of its pages is staged.
                staged = rng.randint(1, 12)
                cli.wait_for(
                    lambda staged=staged: (
                        cli.db.exists()
                        and cli.query("SELECT count(*) FROM _replica_pending")[0][0] >= staged
                    ),
                    timeout=60,
                    what=f"{staged} snapshot pages to be staged",
                )
            else:
                server.clear_faults()  # the later restarts resume at full speed
                # Then in live churn: let this process publish the snapshot first.
                cli.wait_for(
                    lambda: (
                        cli.query("SELECT count(*) FROM _replica_shapes WHERE phase = 'live'")
                        == [(1,)]
                    ),
                    timeout=60,
                    what="the snapshot to be published",
                )
                if churner is None:
                    churner = threading.Thread(target=_churn, args=(server, ids, stop, kill))
                    churner.start()
                time.sleep(rng.uniform(0.3, 2.0))
            in_snapshot = not cli.db.exists() or cli.query(
                "SELECT count(*) FROM _replica_shapes WHERE phase = 'snapshot'"
            ) != [(0,)]
            killed_in_snapshot += in_snapshot
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    finally:
        stop.set()
        if churner is not None:
            churner.join()
    result = cli.run("sync", "--tag", "big", "--once", timeout=180)
    assert result.returncode == 0, result.stderr
    assert killed_in_snapshot >= 1, "no kill landed in the initial snapshot"

    # 1. Row by row equal to the upstream.
    upstream = {
        str(r["friendlyId"]): (
            public_status(str(r["status"])),
            iso_timestamp(r["updatedAt"]),
            r["metadata"],
        )
        for r in server.runs()
    }
    local = {
        row[0]: (row[1], row[2], row[3])
        for row in cli.query("SELECT id, status, updated_at, metadata FROM runs")
    }
    assert set(local) == set(upstream)
    mismatched = [
        run_id
        for run_id, (status, updated, metadata) in upstream.items()
        if local[run_id][:2] != (status, updated)
        or (metadata and json.loads(local[run_id][2] or "null") != json.loads(metadata))
    ]
    assert mismatched == []

    # 2. The change log: one insert per run, then strictly advancing updated_at.
    log: dict[str, list[tuple[int, str, dict[str, Any]]]] = {}
    for seq, key, op, old in cli.query(
        "SELECT seq, key, op, old FROM _replica_changes ORDER BY seq"
    ):
        log.setdefault(key, []).append((seq, op, json.loads(old) if old else {}))
    current = {row[0]: row[1] for row in cli.query("SELECT id, updated_at FROM runs")}
    for run_id, entries in log.items():
        assert [op for _, op, _ in entries].count("insert") == 1, run_id
        assert entries[0][1] == "insert"
        # Walk back from the current row: each change must have moved updated_at forward.
        stamp = current[run_id]
        for _, op, old in reversed(entries[1:]):
            if "updated_at" in old:
                assert old["updated_at"] < stamp, (run_id, old, stamp)
                stamp = old["updated_at"]
            else:
                assert op == "update"
    assert set(log) == set(upstream)
    updates = sum(len(entries) - 1 for entries in log.values())
    assert updates > 0, "the churn never reached the replica"
    print(f"{KILLS} kills ({killed_in_snapshot} during the snapshot), {updates} updates logged")


def test_an_update_to_a_run_only_staged_before_a_kill_keeps_its_metadata(
    tmp_path: Any, devserver_factory: Any
) -> None:
    """A restart mid-snapshot meets partial updates (the changed columns only) of runs that
    are staged but not yet published: their packet types come from the staged rows."""
    server = devserver_factory(chunk_rows=20)
    cli = Replica(tmp_path, server)
    server.trigger_many(
        {"task": "import-csv", "payload": {"row": i}, "options": {"tags": ["big"]}}
        for i in range(200)
    )
    with server.fault("delay", live=False, seconds=0.2):
        proc = cli.start("sync", "--tag", "big")
        cli.wait_for(
            lambda: cli.db.exists() and cli.query("SELECT count(*) FROM _replica_pending")[0][0],
            what="a snapshot page to be staged",
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert cli.query("SELECT count(*) FROM runs") == [(0,)]
    [(run_id,)] = cli.query("SELECT id FROM _replica_staged_runs ORDER BY rowid LIMIT 1")
    server.update_run(run_id, metadata=json.dumps({"progress": 0.5}))

    result = cli.run("sync", "--tag", "big", "--once", timeout=180)
    assert result.returncode == 0, result.stderr
    [(metadata, kind)] = cli.query(
        "SELECT metadata, metadata_type FROM runs WHERE id = ?", (run_id,)
    )
    assert (json.loads(metadata), kind) == ({"progress": 0.5}, "application/json")
