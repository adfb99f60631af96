"""examples/failure_alerts: `replica sync` in one process, the worker in another; the worker
alerts exactly the failed runs of its tag, once each, also for failures while it was down."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from replica.devserver import DevServer
from tests.support.env import replica_env
from tests.support.waiting import wait_for

from .helpers import EXAMPLES, Process, python, query, replica_command

WORKER = EXAMPLES / "failure_alerts" / "alerts.py"
TAG, OTHER = "user:alerts", "org:alerts-other"


def alerted(worker: Process) -> list[str]:
    """Run ids of the ALERT lines printed so far, in order."""
    return [line.split()[1] for line in worker.lines if line.startswith("ALERT ")]


def test_alerts_exactly_the_failed_runs_of_the_tag_once_each(
    tmp_path: Path, server: DevServer, processes: Callable[..., Process]
) -> None:
    db = tmp_path / "replica.db"
    env = replica_env(server, db)
    ours = [server.trigger("send-email", {"n": i}, tags=[TAG, "org:x"]) for i in range(5)]
    theirs = server.trigger("send-email", {}, tags=[OTHER])
    sync = processes(replica_command("sync", "--tag", TAG, "--tag", OTHER), env=env, cwd=tmp_path)
    wait_for(lambda: query(db, "SELECT count(*) FROM runs")[0][0] == 6, what="initial sync")

    worker = processes(python(WORKER, "--tag", TAG, "--duration", "60"), env=env, cwd=tmp_path)
    worker.wait_for_line(lambda line: line.startswith("watching"))
    error = {"type": "BUILT_IN_ERROR", "name": "Error", "message": "SMTP said no"}
    server.fail_run(ours[0], error)
    server.update_run(ours[0], costInCents=1.5)  # an update of a failed run: no second alert
    oom = {"type": "INTERNAL_ERROR", "code": "TASK_PROCESS_OOM_KILLED"}
    server.fail_run(ours[1], oom, "CRASHED")
    server.complete_run(ours[2], {"ok": True})
    server.fail_run(theirs, error)  # synced, but not the worker's tag
    # Changes reach the callback in commit order: once this one is alerted, every
    # earlier change has been through the filter.
    server.fail_run(ours[3], error)
    worker.wait_for_line(lambda line: ours[3] in line)
    assert worker.stop() == 0
    assert alerted(worker) == [ours[0], ours[1], ours[3]]
    assert f"ALERT {ours[0]} send-email FAILED: SMTP said no" in worker.lines

    # A failure while the worker is down is alerted when it comes back; nothing twice.
    server.fail_run(ours[4], error)
    wait_for(
        lambda: query(db, "SELECT status FROM runs WHERE id = ?", (ours[4],)) == [("FAILED",)],
        what="the failure to be synced",
    )
    again = processes(python(WORKER, "--tag", TAG, "--duration", "60"), env=env, cwd=tmp_path)
    again.wait_for_line(lambda line: ours[4] in line)
    assert again.stop() == 0
    assert alerted(again) == [ours[4]]
    assert sync.stop() == 0
