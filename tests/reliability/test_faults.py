"""Churn while the emulator misbehaves: the replica converges, and says what it went through.

`replica sync` follows six shapes (four tag feeds, two Electric shapes) while the upstream
churns and a fault plan keeps arming faults: 409 rotations of every handle or one table's,
bursts of 5xx, 429s, connections dropped mid-body, slow responses and stale replays of
retired handles. Then the faults stop and the replica must equal the upstream, every shape
must be live, and the change log must hold no entry that repeats or rewinds a version.

The counts of each fault the emulator injected and of each one the client logged are
printed (and recorded in docs/reliability.md). CI runs it for ~40 s, REPLICA_SOAK=1 for
10 minutes.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from replica.devserver import DevServer
from replica.devserver.faults import FaultRule
from tests.support.env import replica_env
from tests.support.waiting import wait_for

from .support import (
    Churn,
    LogCheck,
    check_noop_entries,
    compare,
    local_items,
    local_runs,
    populate,
    record,
    replica_command,
    scaled,
    sigkill,
    spawn,
    stories,
    upstream_items,
    upstream_runs,
)

DURATION = float(os.environ.get("REPLICA_FAULT_SECONDS", scaled(40, 600)))
TAGS = ["f0", "f1", "f2", "f3"]


class FaultPlan:
    """Arms a random fault every so often, from a thread, and counts what it armed."""

    KINDS = ("rotate", "rotate-table", "5xx", "429", "drop", "delay", "stale")

    def __init__(self, server: DevServer, seed: int) -> None:
        self.server = server
        self.rng = random.Random(seed)
        self.rules: list[FaultRule] = []
        self.rotations = 0
        self.handles_rotated = 0
        self.armed: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="faults", daemon=True)
        self.errors: list[BaseException] = []

    def start(self) -> FaultPlan:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.server.clear_faults()
        if self.errors:
            raise self.errors[0]

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.rng.uniform(0.3, 1.5)):
                self.arm(self.rng.choice(self.KINDS))
        except BaseException as exc:
            self.errors.append(exc)

    def arm(self, kind: str) -> None:
        rng, server = self.rng, self.server
        self.armed[kind] += 1
        times = rng.randint(1, 6)
        if kind == "rotate":
            self.handles_rotated += len(server.rotate())
            self.rotations += 1
        elif kind == "rotate-table":
            self.handles_rotated += len(server.rotate(table=rng.choice(["items", "TaskRun"])))
            self.rotations += 1
        elif kind == "5xx":
            status = rng.choice([500, 502, 503, 504])
            retry_after = rng.choice([None, 0, 1])
            self.rules.append(
                server.add_fault("error", status=status, retry_after=retry_after, times=times)
            )
        elif kind == "429":
            self.rules.append(server.add_fault("429", retry_after=rng.choice([None, 1])))
            self.rules[-1].times = times
        elif kind == "drop":
            self.rules.append(server.add_fault("drop", times=times))
        elif kind == "delay":
            seconds = round(rng.uniform(0.2, 2.5), 2)
            self.rules.append(server.add_fault("delay", seconds=seconds, times=times))
        else:
            self.rules.append(server.add_fault("stale", times=times))

    def injected(self) -> dict[str, int]:
        fired: Counter[str] = Counter()
        for rule in self.rules:
            name = {"error": "5xx", "429": "429"}.get(rule.kind, rule.kind)
            fired[name] += rule.fired
        fired["409-rotations"] = self.rotations
        fired["handles-rotated"] = self.handles_rotated
        return dict(sorted(fired.items()))


def observed(log_path: Path) -> dict[str, int]:
    """What the client logged, by fault kind (its --debug --json-logs output)."""
    seen: Counter[str] = Counter()
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            message = json.loads(line)["message"]
        except (ValueError, KeyError, TypeError):
            continue
        if "expired (409)" in message:
            seen["409"] += 1
        elif "subscription limit reached" in message or "HTTP 429" in message:
            seen["429"] += 1
        elif "HTTP 5" in message:
            seen["5xx"] += 1
        elif "network error" in message:
            seen["drop"] += 1
        elif "cached response of expired handle" in message or "cached responses" in message:
            seen["stale"] += 1
        elif message.startswith("200 ") and " in " in message:
            seconds = float(message.rsplit(" in ", 1)[1].split(" ", 1)[0])
            if seconds >= 0.2 and "live=true" not in message:
                seen["slow"] += 1
    return dict(sorted(seen.items()))


@pytest.mark.slow
@pytest.mark.timeout(int(DURATION) + 240)
def test_the_replica_converges_through_faults(
    tmp_path: Path, devserver_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = devserver_factory(chunk_rows=100, seed=11)
    history = populate(server, TAGS, 150, 200)
    db = tmp_path / "replica.db"
    entries = [f'[[sync]]\ntag = "{tag}"\n' for tag in TAGS]
    entries += [
        f'[[sync]]\nelectric = "{server.url}"\ntable = "items"\nwhere = "grp = $1"\n'
        f'params = ["{group}"]\n'
        for group in (0, 1)
    ]
    (tmp_path / "replica.toml").write_text("\n".join(entries))
    env = replica_env(server, db)
    log_path = tmp_path / "sync.jsonl"
    proc = spawn(
        replica_command("--debug", "--json-logs", "sync"), cwd=tmp_path, env=env, log=log_path
    )
    churn = Churn(server, history, seed=3, interval=0.01).start()
    plan = FaultPlan(server, seed=5).start()
    started = time.monotonic()
    try:
        while time.monotonic() - started < DURATION:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            time.sleep(1)
        plan.stop()
        churn.stop()
        runs = upstream_runs(server, TAGS)
        items = upstream_items(server, (0, 1))

        def shapes() -> list[dict[str, Any]]:
            status = subprocess.run(
                replica_command("status", "--json"), cwd=tmp_path, env=env, capture_output=True
            )
            return [s for s in json.loads(status.stdout) if s.get("kind") != "consumer"]

        wait_for(
            lambda: (
                compare(runs, local_runs(db)).converged
                and compare(items, local_items(db)).converged
            ),
            timeout=180,
            what="the replica to converge after the faults",
        )
        converged_after = time.monotonic() - started - DURATION
        # A shape that was backing off when the faults stopped is live again after its
        # next request (at most one back-off later).
        wait_for(
            lambda: {s["state"] for s in shapes()} == {"live"},
            timeout=90,
            what="every shape to be live again",
        )
        assert len(shapes()) == 6
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        plan._stop.set()
        churn._stop.set()
        sigkill(proc)

    check = LogCheck()
    for table, columns, version in (
        ("runs", ["id", "metadata"], lambda row: json.loads(row["metadata"] or "{}").get("v")),
        ("items", ["id", "v"], lambda row: row.get("v")),
    ):
        for key, story in stories(db, table, columns).items():
            check.rows += 1
            check.entries += len(story)
            versions = [version(after) for op, after in story if op != "delete"]
            if any(b <= a for a, b in itertools.pairwise(versions)):
                check.note("duplicates", f"{table} {key}: versions {versions[:12]}")
    assert check.problems == [], check.problems
    check_noop_entries(db, check)
    assert check.problems == [], check.problems
    injected = plan.injected()
    seen = observed(log_path)
    assert injected.get("5xx", 0) and injected.get("drop", 0) and injected["409-rotations"]
    record(
        "faults",
        seconds_of_faults=round(DURATION),
        upstream_changes=history.ops,
        faults_injected=injected,
        faults_seen_by_client=seen,
        converged_seconds_after_faults=round(converged_after, 1),
        rows_compared=len(runs) + len(items),
        rows_lost=0,
        log_entries=check.entries,
        versions_repeated_or_rewound=check.duplicates,
    )
    with capsys.disabled():
        print(f"\nfaults injected: {injected}\nfaults seen by the client: {seen}")
