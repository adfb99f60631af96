"""Live benchmarks: sustained changes per second over many shapes, end-to-end latency, idle CPU.

A `replica sync` subprocess follows `shapes` tag feeds (`live:0`, `live:1`, ...) of the
emulator. Then:

- throughput: the emulator commits run updates as fast as it can for a while; the rate is
  the number of changes the replica logged divided by the time from the first commit to the
  last change being visible;
- latency: updates committed one at a time; for each, the time from the emulator's commit
  to the new value being readable in the replica (a reader polling `PRAGMA data_version`).
  Latency to a callback in another process is measured by benchmarks/callback_latency.py;
- idle: CPU seconds the sync process uses per minute while nothing changes.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.initial_sync import sync_env
from benchmarks.workload import Upstream

log = logging.getLogger(__name__)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _tag(i: int) -> str:
    return f"live:{i}"


@dataclass
class LiveResult:
    shapes: int
    changes: int
    changes_per_second: float
    upstream_per_second: float
    visible_p50_ms: float
    visible_p99_ms: float
    samples: int


@dataclass
class IdleResult:
    shapes: int
    seconds: float
    cpu_seconds: float

    @property
    def cpu_seconds_per_minute(self) -> float:
        return self.cpu_seconds * 60 / self.seconds

    @property
    def core_percent(self) -> float:
        return 100 * self.cpu_seconds / self.seconds


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def _percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


class SyncProcess:
    """`replica sync` (following, not --once) of `shapes` tag feeds, in a subprocess."""

    def __init__(self, upstream: Upstream, db: Path, shapes: int) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        self.db = db
        self.shapes = shapes
        env = sync_env(upstream.token)
        command = [sys.executable, "-m", "replica", "sync", "--db", str(db)]
        command += ["--api-url", upstream.url]
        for i in range(shapes):
            command += ["--tag", _tag(i)]
        # Its log goes to a file: an unread pipe fills up and blocks the process.
        self.log_path = db.with_suffix(".log")
        with self.log_path.open("wb") as log_file:
            self.proc = subprocess.Popen(
                command, cwd=db.parent, env=env, stdout=subprocess.DEVNULL, stderr=log_file
            )

    def wait_live(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.log_path.read_text(errors="replace")
                raise RuntimeError(f"replica sync exited ({self.proc.returncode}): {err[-2000:]}")
            try:
                with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10) as conn:
                    live = conn.execute(
                        "SELECT count(*) FROM _replica_shapes WHERE state = 'live'"
                    ).fetchone()[0]
                if live >= self.shapes:
                    return
            except sqlite3.OperationalError:
                pass  # not created yet
            time.sleep(0.2)
        raise TimeoutError(f"{self.shapes} shapes were not live after {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _run_ids(upstream: Upstream, shapes: int) -> list[str]:
    items = [
        {"task": "live-task", "payload": {"i": i}, "options": {"tags": [_tag(i % shapes)]}}
        for i in range(shapes)
    ]
    return upstream.server.trigger_many(items)


def live(
    work: Path, *, shapes: int = 100, burst_seconds: float = 10.0, samples: int = 200
) -> LiveResult:
    """Throughput and latency with `shapes` live shapes (one run each)."""
    with Upstream(0, long_poll_timeout=20.0) as upstream:
        ids = _run_ids(upstream, shapes)
        sync = SyncProcess(upstream, work / "live.db", shapes)
        try:
            sync.wait_live()
            reader = sqlite3.connect(f"file:{work / 'live.db'}?mode=ro", uri=True, timeout=10)
            # Latency: one update at a time, spread over the shapes.
            visible: list[float] = []
            for n in range(samples):
                run_id = ids[n % len(ids)]
                mark = f"m{n}"
                upstream.server.update_run(run_id, metadata=json.dumps({"mark": mark}))
                committed = time.time()
                version = None
                while True:
                    row = reader.execute(
                        "SELECT json_extract(metadata, '$.mark') FROM runs WHERE id = ?",
                        (run_id,),
                    ).fetchone()
                    if row and row[0] == mark:
                        visible.append(time.time() - committed)
                        break
                    # Sleep until the database changes (cheap to poll; readers never block).
                    current = reader.execute("PRAGMA data_version").fetchone()[0]
                    while current == version:
                        time.sleep(0.0005)
                        current = reader.execute("PRAGMA data_version").fetchone()[0]
                    version = current
                time.sleep(0.02)
            # Throughput: commit updates flat out for a while, then wait for the replica.
            before = reader.execute("SELECT coalesce(max(seq), 0) FROM _replica_changes").fetchone()
            started = time.monotonic()
            count = 0
            while time.monotonic() - started < burst_seconds:
                for run_id in ids:
                    upstream.server.update_run(run_id, metadata=json.dumps({"n": count}))
                    count += 1
            committed = time.monotonic() - started
            last = f'{{"n":{count - 1}}}'
            final_id = ids[(count - 1) % len(ids)]
            while True:
                row = reader.execute("SELECT metadata FROM runs WHERE id = ?", (final_id,))
                value = row.fetchone()
                if value and value[0] and json.loads(value[0]) == json.loads(last):
                    break
                if time.monotonic() - started > burst_seconds + 120:
                    raise TimeoutError("the replica did not catch up with the burst")
                time.sleep(0.01)
            elapsed = time.monotonic() - started
            applied = reader.execute(
                "SELECT count(*) FROM _replica_changes WHERE seq > ? AND op = 'update'",
                before,
            ).fetchone()[0]
            reader.close()
        finally:
            sync.stop()
    ms = [v * 1000 for v in visible]
    return LiveResult(
        shapes=shapes,
        changes=applied,
        changes_per_second=applied / elapsed,
        upstream_per_second=count / committed,
        visible_p50_ms=_percentile(ms, 50),
        visible_p99_ms=_percentile(ms, 99),
        samples=len(ms),
    )


def idle(work: Path, *, shapes: int = 1000, seconds: float = 60.0) -> IdleResult:
    """CPU used by `replica sync` following `shapes` quiet shapes for `seconds`."""
    with Upstream(0, long_poll_timeout=20.0) as upstream:
        _run_ids(upstream, shapes)
        sync = SyncProcess(upstream, work / "idle.db", shapes)
        try:
            sync.wait_live(timeout=600)
            time.sleep(min(5.0, seconds / 4))  # let the first long-polls settle
            before = _cpu_seconds(sync.proc.pid)
            started = time.monotonic()
            time.sleep(seconds)
            cpu = _cpu_seconds(sync.proc.pid) - before
            elapsed = time.monotonic() - started
        finally:
            sync.stop()
    return IdleResult(shapes, elapsed, cpu)
