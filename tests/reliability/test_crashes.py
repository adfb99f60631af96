"""SIGKILL at random moments of initial snapshots and live churn, across 10 shapes.

Ten subscriptions (eight tag feeds over `runs`, two Electric shapes over `items`) live in a
`replica.toml`; shapes are added while `replica sync` runs, so kills land in their initial
snapshots, and the upstream churns all along, so the others land in live changes. A durable
consumer process (`on_change(consumer=...)`) follows the change log and is killed too.

After every restart, with the churn paused, the replica must equal the upstream row for
row, the change log must still hold every entry committed before (no seq lost or reused),
and the consumer must have seen every entry, in order (a change repeated right after its
own SIGKILL is the at-least-once redelivery the docs promise; nothing else may repeat).

At the end each row's story in the log is replayed against the upstream's own history:
the first entry is the insert of the version the snapshot held, then every later upstream
version exactly once, in order (no gap, no duplicate, no entry that changed nothing).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from replica.devserver import DevServer
from tests.support.env import replica_env
from tests.support.waiting import wait_for

from .support import (
    ROOT,
    Churn,
    LogCheck,
    check_item_stories,
    check_noop_entries,
    check_run_stories,
    compare,
    local_items,
    local_runs,
    populate,
    query,
    read_jsonl,
    record,
    replica_command,
    scaled,
    sigkill,
    spawn,
    upstream_items,
    upstream_runs,
)

KILLS = int(os.environ.get("REPLICA_RELIABILITY_KILLS", scaled(50, 200)))
TAGS = [f"s{i}" for i in range(8)]
RUNS_PER_TAG = 300
ITEMS = 400
GROUPS = 2
#: Shapes in the order they are subscribed; the first three are there from the start.
SHAPES: list[tuple[str, Any]] = [
    ("tag", "s0"),
    ("items", 0),
    ("tag", "s1"),
    *[("tag", tag) for tag in TAGS[2:5]],
    ("items", 1),
    *[("tag", tag) for tag in TAGS[5:]],
]
FIRST = 3


class Scenario:
    """The upstream, the replica's directory and its processes."""

    def __init__(self, tmp_path: Path, server: DevServer, seed: int) -> None:
        self.dir = tmp_path
        self.server = server
        self.db = tmp_path / "replica.db"
        self.env = replica_env(server, self.db)
        self.rng = random.Random(seed)
        self.subscribed: list[tuple[str, Any]] = []
        self.sync_log = tmp_path / "sync.log"
        self.consumer_out = tmp_path / "consumer.jsonl"
        self.consumer: subprocess.Popen[bytes] | None = None
        self.previous_log: list[tuple[Any, ...]] = []
        self.figures = {
            "kills": 0,
            "kills_in_initial_snapshot": 0,
            "kills_in_live_churn": 0,
            "restarts": 0,
            "consumer_kills": 0,
            "convergence_checks": 0,
            "rows_compared": 0,
            "rows_lost": 0,
            "committed_entries_lost": 0,
            "consumer_gaps": 0,
            "consumer_redeliveries": 0,
        }

    # -- subscriptions ------------------------------------------------------------------

    def subscribe(self, *shapes: tuple[str, Any]) -> None:
        """Add shapes to replica.toml; their snapshot pages are served 50 ms apart until
        `kill_in_snapshot`, so that the kill lands in the snapshot however fast the machine."""
        self.server.add_fault("delay", live=False, seconds=0.05)
        self.subscribed.extend(shapes)
        lines = []
        for kind, value in self.subscribed:
            if kind == "tag":
                lines.append(f'[[sync]]\ntag = "{value}"\n')
            else:
                lines.append(
                    f'[[sync]]\nelectric = "{self.server.url}"\ntable = "items"\n'
                    f'where = "grp = $1"\nparams = ["{value}"]\n'
                )
        staged = self.dir / "replica.toml.new"
        staged.write_text("\n".join(lines))
        staged.replace(self.dir / "replica.toml")

    @property
    def tags(self) -> list[str]:
        return [value for kind, value in self.subscribed if kind == "tag"]

    @property
    def groups(self) -> list[int]:
        return [value for kind, value in self.subscribed if kind == "items"]

    # -- processes ----------------------------------------------------------------------

    def start_sync(self) -> subprocess.Popen[bytes]:
        return spawn(replica_command("sync"), cwd=self.dir, env=self.env, log=self.sync_log)

    def start_consumer(self) -> None:
        script = str(ROOT / "tests" / "reliability" / "consumer.py")
        self.consumer = spawn(
            [sys.executable, script, str(self.db), str(self.consumer_out), "audit"],
            cwd=self.dir,
            env=self.env,
            log=self.dir / "consumer.log",
        )

    def kill_sync(self, proc: subprocess.Popen[bytes], moment: str) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(15)
        self.figures["kills"] += 1
        # What the dead process left is final: was a snapshot still being staged?
        staging = query(
            self.db,
            "SELECT count(*) FROM _replica_shapes WHERE phase = 'snapshot'",
        )[0][0]
        if moment == "snapshot" and staging:
            self.figures["kills_in_initial_snapshot"] += 1
        else:
            self.figures["kills_in_live_churn"] += 1

    def kill_consumer(self) -> None:
        assert self.consumer is not None
        sigkill(self.consumer)
        self.figures["consumer_kills"] += 1
        self.start_consumer()

    def staged_pages(self, newer_than: int) -> int:
        """Pages staged by snapshots of shapes with an id above `newer_than` (-1 if those
        snapshots are already published)."""
        rows = query(
            self.db,
            "SELECT s.phase, (SELECT count(*) FROM _replica_pending p WHERE p.shape_id = s.id) "
            "FROM _replica_shapes s WHERE s.id > ?",
            (newer_than,),
        )
        if rows and all(phase == "live" for phase, _ in rows):
            return -1
        return sum(pages for _, pages in rows)

    def kill_in_snapshot(self, proc: subprocess.Popen[bytes], newer_than: int) -> None:
        """SIGKILL once a random number of pages of the new snapshots is staged."""
        target = self.rng.randint(1, 4)
        wait_for(
            lambda: self.staged_pages(newer_than) >= target or self.staged_pages(newer_than) < 0,
            timeout=60,
            what="a snapshot to be staged",
        )
        time.sleep(self.rng.uniform(0, 0.05))
        self.kill_sync(proc, "snapshot")
        self.server.clear_faults()

    def max_shape_id(self) -> int:
        if not self.db.exists():
            return 0
        return query(self.db, "SELECT coalesce(max(id), 0) FROM _replica_shapes")[0][0]

    # -- checks -------------------------------------------------------------------------

    def converge(self, proc: subprocess.Popen[bytes], churn: Churn | None) -> None:
        """With the churn paused: the replica equals the upstream, the log kept every
        committed entry, and the consumer saw everything in order."""
        if churn is not None:
            churn.pause()
        try:
            runs = upstream_runs(self.server, self.tags)
            items = upstream_items(self.server, self.groups)

            def equal() -> bool:
                assert proc.poll() is None, self.tail()
                both = compare(runs, local_runs(self.db)), compare(items, local_items(self.db))
                return all(d.converged for d in both)

            try:
                wait_for(equal, what="the replica to equal the upstream")
            except AssertionError as exc:
                runs_now = compare(upstream_runs(self.server, self.tags), local_runs(self.db))
                items_now = compare(upstream_items(self.server, self.groups), local_items(self.db))
                up, local = upstream_runs(self.server, self.tags), local_runs(self.db)
                stale = [(k, up[k], local.get(k)) for k in up if up[k] != local.get(k)][:3]
                raise AssertionError(
                    f"{exc}: runs {runs_now}, items {items_now}; {stale}\n{self.tail()}"
                ) from None
            self.figures["convergence_checks"] += 1
            self.figures["rows_compared"] += len(runs) + len(items)
            self.check_log()
            self.check_consumer()
        finally:
            if churn is not None:
                churn.resume()

    def check_log(self) -> None:
        entries = query(self.db, "SELECT seq, tbl, key, op FROM _replica_changes ORDER BY seq")
        kept = entries[: len(self.previous_log)]
        lost = sum(1 for a, b in zip(kept, self.previous_log, strict=True) if a != b)
        lost += len(self.previous_log) - len(kept)
        self.figures["committed_entries_lost"] += lost
        assert lost == 0, "entries committed before a kill changed or vanished"
        seqs = [e[0] for e in entries]
        assert seqs == sorted(set(seqs))
        self.previous_log = entries

    def check_consumer(self) -> None:
        head = self.previous_log[-1][0] if self.previous_log else 0
        wait_for(
            lambda: any(line["seq"] == head for line in read_jsonl(self.consumer_out)),
            timeout=60,
            what=f"the consumer to reach seq {head}",
        )
        by_seq = {seq: (tbl, key, op) for seq, tbl, key, op in self.previous_log}
        order = [seq for seq, *_ in self.previous_log]
        following = dict(itertools.pairwise(order))
        lines = read_jsonl(self.consumer_out)
        assert lines[0]["seq"] == order[0]
        gaps = redeliveries = 0
        for before, line in itertools.pairwise(lines):
            assert by_seq[line["seq"]] == (line["table"], line["key"], line["op"]), line
            if line["seq"] == before["seq"]:
                redeliveries += 1
            elif line["seq"] != following.get(before["seq"]):
                gaps += 1
        delivered = {line["seq"] for line in lines}
        gaps += len(set(order) - delivered)
        self.figures["consumer_gaps"] = gaps
        self.figures["consumer_redeliveries"] = redeliveries
        assert gaps == 0, "the consumer missed or reordered changes"
        assert redeliveries <= self.figures["consumer_kills"]

    def tail(self) -> str:
        text = self.sync_log.read_text(errors="replace") if self.sync_log.exists() else ""
        return text[-3000:]


@pytest.mark.slow
@pytest.mark.timeout(scaled(300, 3600))
def test_sigkills_across_ten_shapes_lose_nothing(
    tmp_path: Path, devserver_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = devserver_factory(chunk_rows=50)
    history = populate(server, TAGS, RUNS_PER_TAG, ITEMS, GROUPS)
    scenario = Scenario(tmp_path, server, seed=20261128)
    rng = scenario.rng
    started = time.monotonic()
    scenario.subscribe(*SHAPES[:FIRST])
    scenario.start_consumer()
    churn: Churn | None = None
    proc = scenario.start_sync()
    try:
        # The first kill lands in the first snapshots; the churn starts after it.
        scenario.kill_in_snapshot(proc, newer_than=0)
        churn = Churn(server, history, seed=7, groups=GROUPS).start()
        to_add = list(SHAPES[FIRST:])
        for cycle in range(1, KILLS):
            proc = scenario.start_sync()
            scenario.figures["restarts"] += 1
            scenario.converge(proc, churn)
            left = KILLS - cycle
            if to_add and (len(to_add) >= left or rng.random() < 0.5):
                newest = scenario.max_shape_id()
                scenario.subscribe(to_add.pop(0))
                scenario.kill_in_snapshot(proc, newer_than=newest)
            else:
                if rng.random() < 0.3:
                    time.sleep(rng.uniform(0, 0.5))
                    scenario.kill_consumer()
                time.sleep(rng.uniform(0.2, 1.5))
                scenario.kill_sync(proc, "live")
        assert not to_add, "every shape should have been added"
        proc = scenario.start_sync()
        scenario.figures["restarts"] += 1
        scenario.converge(proc, churn)
        churn.stop()
        churn = None
        scenario.converge(proc, None)
        # The replica may have equalled the upstream before this process even started: stop
        # it once it holds the writer lock (its handlers are in place by then; a SIGTERM
        # while Python is still starting kills it, as it would any program).
        lock = Path(f"{scenario.db}.lock")
        wait_for(lambda: lock.read_text().strip() == str(proc.pid), what="the sync's lock")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, scenario.tail()
    finally:
        if churn is not None:
            churn.stop()
        sigkill(proc)
        if scenario.consumer is not None:
            sigkill(scenario.consumer)

    status = json.loads(
        subprocess.run(
            replica_command("status", "--json"),
            cwd=tmp_path,
            env=scenario.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    shapes = [s for s in status if s.get("kind") != "consumer"]
    assert len(shapes) == len(SHAPES) == 10

    check = LogCheck()
    check_run_stories(scenario.db, history, check)
    check_item_stories(scenario.db, history, check)
    check_noop_entries(scenario.db, check)
    assert check.problems == [], check.problems
    figures = scenario.figures
    assert figures["kills"] == KILLS
    assert figures["kills_in_initial_snapshot"] >= 3, figures
    record(
        "crashes",
        **figures,
        shapes=len(SHAPES),
        upstream_changes=history.ops,
        log_entries=check.entries,
        rows_with_a_story=check.rows,
        log_gaps=check.gaps,
        log_duplicates=check.duplicates,
        log_out_of_order=check.out_of_order,
        seconds=round(time.monotonic() - started),
    )
    with capsys.disabled():
        print(f"\ncrashes: {figures}")
