"""The sync in one process, listeners in others, against the emulator over real HTTP:
every change reaches each listener in commit order, none missing; a listener killed with
SIGKILL mid-stream and restarted under the same consumer name resumes with no gap."""

from __future__ import annotations

import itertools
import signal
import subprocess
from pathlib import Path

import pytest

from replica import Replica
from replica.devserver import DevServer
from tests.support.env import replica_env
from tests.support.waiting import wait_for

from .helpers import log_entries, read_jsonl, start_listener, start_replica, stop

pytestmark = pytest.mark.slow


def ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", (line, proc.stderr.read() if proc.stderr else "")


def make_traffic(server: DevServer, db: Path, runs: int) -> list[str]:
    """Runs tagged user:1: triggered, synced, then each started, progressing and completed
    (or failed), one upstream transaction at a time."""
    ids = [server.trigger("work", {"n": n}, tags=["user:1"]) for n in range(runs)]
    wait_for(lambda: count(db, "SELECT count(*) AS n FROM runs") == runs, what="the snapshot")
    for n, run_id in enumerate(ids):
        server.start_run(run_id)
        server.set_metadata(run_id, {"progress": 0.5})
        if n % 5 == 0:
            server.fail_run(run_id, {"message": f"boom {n}"})
        else:
            server.complete_run(run_id, {"n": n})
    return ids


def count(db: Path, sql: str) -> int:
    with Replica(db) as replica:
        return replica.query(sql)[0]["n"]


def all_synced(db: Path, ids: list[str]) -> bool:
    """Every run has finished in the replica: its last upstream change, and the upstream's
    last change overall is the last run's, so the change log is complete."""
    finished = "SELECT count(*) AS n FROM runs WHERE finished_at IS NOT NULL"
    return count(db, finished) == len(ids)


def test_every_change_reaches_two_listener_processes_in_order(
    devserver: DevServer, tmp_path: Path
) -> None:
    db = tmp_path / "replica.db"
    Replica(db).close()  # the schema exists before anyone starts
    outs = [tmp_path / "one.jsonl", tmp_path / "two.jsonl"]
    listeners = [
        start_listener(db, outs[0], consumer="one"),
        start_listener(db, outs[1]),  # anonymous: from the beginning, in memory
    ]
    for proc in listeners:
        ready(proc)
    sync = start_replica("sync", "--tag", "user:1", env=replica_env(devserver, db))
    try:
        ids = make_traffic(devserver, db, 30)
        wait_for(lambda: all_synced(db, ids), what="the sync")
        log = log_entries(db, "runs")
        for out in outs:
            wait_for(lambda out=out: len(read_jsonl(out)) >= len(log), what=f"{out.name}")
    finally:
        for proc in listeners:
            stop(proc)
        stop(sync)
    expected = [(e["seq"], e["op"], e["key"]) for e in log]
    assert len(expected) >= 30 * 4
    for out in outs:
        got = [(c["seq"], c["op"], c["key"]) for c in read_jsonl(out)]
        assert got == expected  # each one, in commit order, none missing, none twice
    # Each run's statuses arrived in the order they happened.
    statuses: dict[str, list[str]] = {}
    for change in read_jsonl(outs[0]):
        statuses.setdefault(change["key"], []).append(change["status"])
    for run_id in ids:
        seen = [s for i, s in enumerate(statuses[run_id]) if i == 0 or s != statuses[run_id][i - 1]]
        assert seen[0] in ("QUEUED", "EXECUTING", "COMPLETED", "FAILED")
        assert seen[-1] in ("COMPLETED", "FAILED")


def test_a_listener_killed_mid_stream_resumes_with_no_gap(
    devserver: DevServer, tmp_path: Path
) -> None:
    db = tmp_path / "replica.db"
    Replica(db).close()
    out = tmp_path / "slow.jsonl"
    slow = start_listener(db, out, consumer="slow", delay=0.02)
    ready(slow)
    sync = start_replica("sync", "--tag", "user:1", env=replica_env(devserver, db))
    try:
        ids = make_traffic(devserver, db, 40)
        wait_for(lambda: len(read_jsonl(out)) >= 40, what="the slow listener to get going")
        slow.send_signal(signal.SIGKILL)
        slow.wait(10)  # reaped: its lease is recognisably dead
        killed_at = len(read_jsonl(out))
        restarted = start_listener(db, out, consumer="slow")
        ready(restarted)
        wait_for(lambda: all_synced(db, ids), what="the sync")
        log = log_entries(db, "runs")
        wait_for(lambda: read_jsonl(out)[-1]["seq"] == log[-1]["seq"], what="catching up")
        assert sync.poll() is None  # the sync never noticed
    finally:
        stop(sync)
        if "restarted" in locals():
            stop(restarted)
    got = [c["seq"] for c in read_jsonl(out)]
    expected = [e["seq"] for e in log]
    assert killed_at < len(expected)  # it really was killed mid-stream
    duplicates = [a for a, b in itertools.pairwise(got) if a == b]
    assert len(duplicates) <= 1  # at most the change in flight when it was killed
    assert [s for i, s in enumerate(got) if i == 0 or s != got[i - 1]] == expected
