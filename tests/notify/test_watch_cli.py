"""`replica watch` in a subprocess: one JSON line per change, following commits; consumers
resume; filters; usage errors; clean exits on signals and closed pipes."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from replica.cli import cli
from replica.notify.retention import Retention
from replica.store import Store
from tests.support.waiting import PATIENCE, wait_for

from .helpers import ROOT, Writer, run, update


class Watch:
    """A `replica watch` process whose stdout lines are read in the background."""

    def __init__(self, db: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "replica", "watch", "--db", str(db), *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def take(self, count: int) -> list[dict[str, Any]]:
        return [json.loads(self.lines.get(timeout=PATIENCE)) for _ in range(count)]

    def nothing_more(self, wait: float = 0.5) -> bool:
        """No further line comes within `wait` s (nothing happening has no state to wait
        for; a slow machine can only make this check weaker)."""
        try:
            extra = self.lines.get(timeout=wait)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected line: {extra}")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> tuple[int, str]:
        self.proc.send_signal(sig)
        self.proc.wait(15)
        assert self.proc.stderr is not None
        return self.proc.returncode, self.proc.stderr.read()


def consumer_registered(db_path: Path, name: str) -> bool:
    import sqlite3

    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT owner FROM _replica_consumers WHERE name = ?", (name,)
        ).fetchone()
        return row is not None and row[0] is not None
    finally:
        conn.close()


def test_json_lines_following_new_commits(db_path: Path, writer: Writer) -> None:
    writer.commit(run(1, metadata='{"progress": 0.5}'))
    watch = Watch(db_path, "--since", "0")
    try:
        [first] = watch.take(1)
        assert first["seq"] == 1 and first["op"] == "insert" and first["table"] == "runs"
        assert first["key"] == "run_1" and first["row"]["metadata"] == {"progress": 0.5}
        assert first["row"]["tags"] == ["a"] and first["changed"] == [] and first["old"] is None
        assert first["shape"] == "tag:a" and first["committed_at"].endswith("Z")
        writer.commit(update(1, status="EXECUTING"))
        [second] = watch.take(1)
        assert (second["seq"], second["op"], second["changed"]) == (2, "update", ["status"])
        assert second["old"] == {"status": "QUEUED"} and second["row"]["status"] == "EXECUTING"
    finally:
        code, stderr = watch.stop()
    assert code == 0 and "Traceback" not in stderr


def test_a_consumer_resumes_after_its_last_printed_change(db_path: Path, writer: Writer) -> None:
    watch = Watch(db_path, "--consumer", "w")
    wait_for(lambda: consumer_registered(db_path, "w"), what="the consumer")
    writer.commit(run(1))
    writer.commit(run(2))
    assert [c["seq"] for c in watch.take(2)] == [1, 2]
    code, _ = watch.stop(signal.SIGINT)
    assert code == 0
    writer.commit(run(3))  # while nobody watches
    writer.commit(update(3, status="FAILED"))
    again = Watch(db_path, "--consumer", "w", "--since", "0")  # --since: ignored, it exists
    try:
        assert [c["seq"] for c in again.take(2)] == [3, 4]
        assert again.nothing_more()
    finally:
        code, stderr = again.stop()
    assert code == 0 and "--since ignored" in stderr


def test_where_and_ops(db_path: Path, writer: Writer) -> None:
    writer.commit(run(1), run(2, status="FAILED"))
    writer.commit(update(1, status="FAILED"))
    watch = Watch(db_path, "--since", "0", "--where", "status = 'FAILED'", "--ops", "update")
    try:
        [only] = watch.take(1)
        assert (only["key"], only["op"], only["seq"]) == ("run_1", "update", 3)
        assert watch.nothing_more()
    finally:
        watch.stop()


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_a_bad_filter_is_a_usage_error(db_path: Path, store: Store) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "replica", "watch", "--db", str(db_path), "--where", "status = ="],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert "not valid SQL" in one_error_line(result.stderr)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--where", "colour = 'red'"), 2, "no column 'colour'"),
        (("--where", "frobnicate(status)"), 2, "no such function"),
        (("--where", "'a' IN (SELECT id FROM runs)"), 2, "cannot read tables"),
        (("--table", "nowhere"), 2, "not a replicated table"),
        (("--ops", "upsert"), 2, "unknown ops"),
    ],
)
def test_usage_errors_come_before_anything_starts(
    db_path: Path, store: Store, args: tuple[str, ...], code: int, message: str
) -> None:
    result = CliRunner().invoke(cli, ["watch", "--db", str(db_path), *args])
    assert result.exit_code == code
    assert message in one_error_line(result.stderr)


def test_a_missing_database_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["watch", "--db", str(tmp_path / "missing.db")])
    assert result.exit_code == 1 and "does not exist" in one_error_line(result.stderr)
    assert not (tmp_path / "missing.db").exists()


def test_a_closed_pipe_ends_it_quietly(db_path: Path, writer: Writer) -> None:
    writer.commit(run(1))
    # pipefail: the pipeline's status is watch's own, not head's.
    proc = subprocess.Popen(
        [
            "bash",
            "-c",
            f"set -o pipefail; {sys.executable} -m replica watch --db {db_path} --since 0 "
            "| head -n 1",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # head prints one line and exits
    assert json.loads(first)["seq"] == 1
    n = 1
    while proc.poll() is None and n < 100:  # until a write of watch's finds the pipe closed
        n += 1
        writer.commit(run(n))
        time.sleep(0.1)
    out, err = proc.communicate(timeout=30)
    assert out == ""
    assert proc.returncode == 0
    assert "Traceback" not in err and "Error" not in err


def test_a_reader_behind_the_pruned_log_gets_a_reset_line(
    db_path: Path, store: Store, writer: Writer
) -> None:
    writer.commit(run(1), run(2))
    Retention().prune(store.conn, now=datetime.now(timezone.utc) + timedelta(days=8))
    writer.commit(run(3))
    watch = Watch(db_path, "--since", "0")
    try:
        reset, third = watch.take(2)
        assert reset == {
            "seq": 2,
            "op": "reset",
            "table": None,
            "key": None,
            "row": None,
            "changed": [],
            "old": None,
            "shape": None,
            "committed_at": None,
        }
        assert third["seq"] == 3
    finally:
        watch.stop()
