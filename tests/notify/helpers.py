"""Building blocks of the notify tests: writing runs through the store, reading the log,
starting `replica` and listener processes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from replica.store import Store
from replica.tables import RowChange
from tests.support.waiting import wait_for as wait_for  # the suite's one wait, at hand here

ROOT = Path(__file__).resolve().parents[2]


class Writer:
    """The sync's side, in-process: commits pages of changes for one shape of a Store."""

    def __init__(self, store: Store, key: str = "tag:a") -> None:
        self.store = store
        self.shape = store.register_shape(key, kind="tag", target="runs").id
        self.offset = 0

    def commit(self, *changes: RowChange) -> int | None:
        """One transaction; returns the last change-log seq it wrote."""
        self.offset += 1
        result = self.store.apply(
            self.shape,
            list(changes),
            position={"handle": "h", "offset": f"{self.offset}_0", "cursor": None},
            up_to_date=True,
        )
        return result.last_seq


def run(n: int, status: str = "QUEUED", **extra: Any) -> RowChange:
    """An insert of run `run_<n>` (internal id `int_<n>`)."""
    values = {
        "id": f"run_{n}",
        "task_identifier": "task",
        "status": status,
        "tags": '["a"]',
        "created_at": f"2026-01-01T00:00:{n % 60:02d}.000Z",
        "updated_at": f"2026-01-01T00:00:{n % 60:02d}.000Z",
        **extra,
    }
    return RowChange("insert", f"int_{n}", values)


def update(n: int, **values: Any) -> RowChange:
    return RowChange("update", f"int_{n}", values)


def log_entries(db: Path, table: str | None = None) -> list[dict[str, Any]]:
    """The change log as stored, oldest first."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        sql = "SELECT * FROM _replica_changes"
        params: tuple[Any, ...] = ()
        if table is not None:
            sql += " WHERE tbl = ?"
            params = (table,)
        return [dict(r) for r in conn.execute(sql + " ORDER BY seq", params)]
    finally:
        conn.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Complete JSON lines of a file another process appends to."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    return [json.loads(line) for line in lines[:-1] if line.strip()]


def start_replica(*args: str, env: dict[str, str], **kwargs: Any) -> subprocess.Popen[str]:
    """`replica ...` in a subprocess (stdout and stderr piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "replica", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def start_listener(
    db: Path, out: Path, *, consumer: str | None = None, delay: float = 0.0, where: str = ""
) -> subprocess.Popen[str]:
    """A listener process (tests/notify/listener.py) appending changes to `out`."""
    args = [sys.executable, str(ROOT / "tests" / "notify" / "listener.py"), str(db), str(out)]
    if consumer:
        args += ["--consumer", consumer]
    if delay:
        args += ["--delay", str(delay)]
    if where:
        args += ["--where", where]
    return subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def stop(proc: subprocess.Popen[str], timeout: float = 15.0) -> tuple[str, str]:
    """SIGTERM, then wait; returns (stdout, stderr)."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()
