"""Shared pieces of the reliability suite: the soak switch, the figures it reports, the
ground truth of an upstream under churn, and the checks that a replica matches it.

`REPLICA_SOAK=1` switches every scenario to its long figures (see docs/reliability.md).
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replica.devserver import DevServer
from replica.sources.taskrun import iso_timestamp, public_status
from tests.support.figures import SOAK as SOAK
from tests.support.figures import record as record
from tests.support.waiting import wait_for as wait_for  # the suite's one wait, at hand here

ROOT = Path(__file__).resolve().parents[2]


def scaled(ci: Any, soak: Any) -> Any:
    """`soak` under REPLICA_SOAK=1, else `ci`."""
    return soak if SOAK else ci


# -- processes ----------------------------------------------------------------------------


def replica_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "replica", *args]


def spawn(
    args: list[str], *, cwd: Path, env: dict[str, str], log: Path | None = None
) -> subprocess.Popen[bytes]:
    """A process whose output goes to `log` (appended), never to a pipe nobody reads."""
    out: Any = subprocess.DEVNULL
    if log is not None:
        out = open(log, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        return subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    finally:
        if log is not None:
            out.close()


def sigkill(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(15)


def read_only(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)


def query(db: Path, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    conn = read_only(db)
    try:
        return conn.execute(sql, tuple(params)).fetchall()
    finally:
        conn.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Complete JSON lines of a file another process appends to (a torn line is skipped)."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().split("\n")[:-1]:
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


# -- the upstream and its history ---------------------------------------------------------

#: The Electric table every scenario churns beside the runs: `v` counts the row's versions.
ITEMS_COLUMNS = {"id": "int4", "grp": "int4", "v": "int4", "note": "text"}


@dataclass
class History:
    """What the churn did upstream, in commit order: per row key, each version it took.

    A run's versions are its `metadata.v`; an item's are `(op, v)` with `v` None for a
    delete. Every version is one upstream transaction, so a replica following the shape's
    log must log each one after its snapshot, exactly once.
    """

    runs: dict[str, list[int]] = field(default_factory=dict)
    items: dict[int, list[tuple[str, int | None]]] = field(default_factory=dict)
    ops: int = 0


class Churn:
    """Changes the upstream from a thread until stopped: run metadata and status, item
    inserts, updates and deletes; `pause()` returns once no change is in flight."""

    STATUSES = ("EXECUTING", "WAITING_TO_RESUME", "DEQUEUED", "PENDING")

    def __init__(
        self,
        server: DevServer,
        history: History,
        *,
        seed: int,
        interval: float = 0.02,
        groups: int = 2,
    ) -> None:
        self.server = server
        self.history = history
        self.rng = random.Random(seed)
        self.interval = interval
        self.groups = groups
        self.run_ids = sorted(history.runs)
        self._next_item = max(history.items, default=0) + 1
        self._stop = threading.Event()
        self._running = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[BaseException] = []

    def start(self) -> Churn:
        self._thread = threading.Thread(target=self._loop, name="churn", daemon=True)
        self._running.set()
        self._thread.start()
        return self

    def pause(self) -> None:
        self._running.clear()
        self._idle.wait(10)

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.errors:
            raise self.errors[0]

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._running.is_set():
                    self._idle.set()
                    self._running.wait()
                    continue
                self._idle.clear()
                self.step()
                if self.interval:
                    time.sleep(self.interval)
        except BaseException as exc:  # reported by stop()
            self.errors.append(exc)
        finally:
            self._idle.set()

    def step(self) -> None:
        """One upstream transaction, recorded in the history."""
        rng, history = self.rng, self.history
        history.ops += 1
        if rng.random() < 0.7:
            run_id = rng.choice(self.run_ids)
            version = history.runs[run_id][-1] + 1
            values: dict[str, Any] = {"metadata": json.dumps({"v": version})}
            if rng.random() < 0.4:
                values["status"] = rng.choice(self.STATUSES)
            self.server.update_run(run_id, **values)
            history.runs[run_id].append(version)
            return
        live = [key for key, events in history.items.items() if events[-1][0] != "delete"]
        gone = [key for key, events in history.items.items() if events[-1][0] == "delete"]
        roll = rng.random()
        if roll < 0.6 and live:
            key = rng.choice(live)
            version = _last_version(history.items[key]) + 1
            self.server.update("items", {"id": key}, {"v": version, "note": f"v{version}"})
            history.items[key].append(("update", version))
        elif roll < 0.75 and live:
            key = rng.choice(live)
            self.server.delete("items", {"id": key})
            history.items[key].append(("delete", None))
        elif roll < 0.85 and gone:
            key = rng.choice(gone)
            version = _last_version(history.items[key]) + 1
            self.server.insert("items", _item(key, version, self.groups))
            history.items[key].append(("insert", version))
        else:
            key = self._next_item
            self._next_item += 1
            self.server.insert("items", _item(key, 0, self.groups))
            history.items[key] = [("insert", 0)]


def _item(key: int, version: int, groups: int) -> dict[str, Any]:
    return {"id": key, "grp": key % groups, "v": version, "note": f"v{version}"}


def _last_version(events: list[tuple[str, int | None]]) -> int:
    return max(v for _, v in events if v is not None)


def populate(
    server: DevServer, tags: list[str], runs_per_tag: int, items: int, groups: int = 2
) -> History:
    """Runs tagged with each of `tags` (one tag each) and `items` rows, at version 0."""
    history = History()
    server.define_table("items", ITEMS_COLUMNS, "id")
    for tag in tags:
        ids = server.trigger_many(
            {
                "task": "import-row",
                "payload": {"tag": tag, "n": n, "pad": "x" * 120},
                "options": {"tags": [tag], "metadata": {"v": 0}},
            }
            for n in range(runs_per_tag)
        )
        for run_id in ids:
            history.runs[run_id] = [0]
    with server.transaction() as tx:
        for key in range(1, items + 1):
            tx.insert("items", _item(key, 0, groups))
            history.items[key] = [("insert", 0)]
    return history


# -- comparing a replica with its upstream ------------------------------------------------


def upstream_runs(server: DevServer, tags: Iterable[str]) -> dict[str, tuple[Any, ...]]:
    """Runs the subscribed tag feeds hold upstream: id -> (status, updated_at, metadata)."""
    wanted = set(tags)
    found = {}
    for run in server.runs():
        run_tags = set(_pg_array(run.get("runTags")))
        if run_tags & wanted:
            found[str(run["friendlyId"])] = (
                public_status(str(run["status"])),
                iso_timestamp(run["updatedAt"]),
                json.loads(run["metadata"]) if run.get("metadata") else None,
            )
    return found


def _pg_array(text: Any) -> list[str]:
    if isinstance(text, list):
        return [str(t) for t in text]
    if not text or text == "{}":
        return []
    return [part.strip('"') for part in str(text).strip("{}").split(",")]


def local_runs(db: Path) -> dict[str, tuple[Any, ...]]:
    return {
        run_id: (status, updated_at, json.loads(metadata) if metadata else None)
        for run_id, status, updated_at, metadata in query(
            db, "SELECT id, status, updated_at, metadata FROM runs WHERE detached_at IS NULL"
        )
    }


def upstream_items(server: DevServer, groups: Iterable[int]) -> dict[int, tuple[Any, ...]]:
    wanted = set(groups)
    return {
        int(row["id"]): (int(row["grp"]), int(row["v"]), row["note"])
        for row in server.rows("items")
        if int(row["grp"]) in wanted
    }


def local_items(db: Path) -> dict[int, tuple[Any, ...]]:
    try:
        rows = query(db, "SELECT id, grp, v, note FROM items")
    except sqlite3.OperationalError:  # no Electric shape synced yet
        return {}
    return {row[0]: tuple(row[1:]) for row in rows}


@dataclass
class Difference:
    """How a replica differs from its upstream (all zero when it has converged)."""

    missing: int = 0  # rows upstream, not in the replica (rows lost)
    extra: int = 0  # rows in the replica the upstream does not hold
    stale: int = 0  # rows whose values differ
    compared: int = 0

    @property
    def converged(self) -> bool:
        return not (self.missing or self.extra or self.stale)


def compare(upstream: dict[Any, tuple[Any, ...]], local: dict[Any, tuple[Any, ...]]) -> Difference:
    diff = Difference(compared=len(upstream))
    diff.missing = len(upstream.keys() - local.keys())
    diff.extra = len(local.keys() - upstream.keys())
    diff.stale = sum(1 for key in upstream.keys() & local.keys() if upstream[key] != local[key])
    return diff


# -- the change log's story ---------------------------------------------------------------


@dataclass
class LogCheck:
    """What checking the change log against the upstream history found."""

    entries: int = 0
    rows: int = 0
    gaps: int = 0  # upstream versions the log skipped
    duplicates: int = 0  # versions logged twice, or entries that changed nothing
    out_of_order: int = 0  # versions logged before an earlier one
    unknown: int = 0  # rows or versions the upstream never had
    problems: list[str] = field(default_factory=list)

    def note(self, kind: str, message: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.problems) < 20:
            self.problems.append(message)


def log_entries(db: Path) -> list[tuple[int, str, str, str, list[str], dict[str, Any]]]:
    """(seq, table, key, op, changed, old) of every change-log entry, in seq order."""
    return [
        (seq, tbl, key, op, json.loads(changed or "[]"), json.loads(old) if old else {})
        for seq, tbl, key, op, changed, old in query(
            db, "SELECT seq, tbl, key, op, changed, old FROM _replica_changes ORDER BY seq"
        )
    ]


def stories(db: Path, table: str, columns: list[str]) -> dict[str, list[tuple[str, dict]]]:
    """Each row's story in the log: (op, row after the change), oldest first.

    The log holds previous values only; the row after each change is found by rewinding the
    current row through the later changes' previous values.
    """
    key_column = "id"
    current = {
        str(row[0]): dict(zip(columns, row, strict=True))
        for row in query(db, f"SELECT {', '.join(columns)} FROM {table}")
    }
    by_key: dict[str, list[tuple[str, list[str], dict[str, Any]]]] = {}
    for _, tbl, key, op, changed, old in log_entries(db):
        if tbl == table:
            by_key.setdefault(key, []).append((op, changed, old))
    result = {}
    for key, entries in by_key.items():
        state: dict[str, Any] | None = current.get(key)
        story: list[tuple[str, dict]] = []
        for op, changed, old in reversed(entries):
            story.append((op, dict(state) if state is not None else {}))
            if op == "insert":
                state = None
            elif op == "delete":
                state = {c: old.get(c) for c in columns}
                state[key_column] = state.get(key_column, key)
            else:
                assert state is not None, (table, key, op)
                state = {**state, **{c: old[c] for c in changed if c in old and c in columns}}
        if state is not None:
            story.append(("unexplained", dict(state)))  # the log does not begin the row
        result[key] = list(reversed(story))
    return result


def check_run_stories(db: Path, history: History, check: LogCheck) -> None:
    """Each run's log: an insert at some version, then every later upstream version once."""
    for key, story in stories(db, "runs", ["id", "status", "metadata", "detached_at"]).items():
        check.rows += 1
        check.entries += len(story)
        versions = [_run_version(after) for _, after in story]
        truth = history.runs.get(key)
        if truth is None:
            check.note("unknown", f"run {key} is not an upstream run")
            continue
        _check_sequence(check, f"run {key}", [op for op, _ in story], versions, truth)


def check_item_stories(db: Path, history: History, check: LogCheck) -> None:
    """Each item's log: an insert at some version, then every later upstream event once."""
    for key, story in stories(db, "items", ["id", "grp", "v", "note"]).items():
        check.rows += 1
        check.entries += len(story)
        truth = history.items.get(int(key))
        if truth is None:
            check.note("unknown", f"item {key} is not an upstream row")
            continue
        logged = [(op, after.get("v") if op != "delete" else None) for op, after in story]
        if logged[0][0] != "insert":
            check.note("gaps", f"item {key}: the log begins with {logged[0][0]}")
            continue
        start = next(
            (i for i, (_, v) in enumerate(truth) if v == logged[0][1]),
            None,
        )
        if start is None:
            check.note("unknown", f"item {key}: version {logged[0][1]} never existed")
            continue
        expected = [("insert", truth[start][1]), *truth[start + 1 :]]
        _compare_events(check, f"item {key}", logged, expected)


def _run_version(row: dict[str, Any]) -> int | None:
    metadata = row.get("metadata")
    if not metadata:
        return None
    value = json.loads(metadata) if isinstance(metadata, str) else metadata
    return value.get("v") if isinstance(value, dict) else None


def _check_sequence(
    check: LogCheck, what: str, ops: list[str], versions: list[Any], truth: list[int]
) -> None:
    if ops[0] != "insert":
        check.note("gaps", f"{what}: the log begins with {ops[0]}")
        return
    expected = list(range(versions[0], truth[-1] + 1)) if versions[0] is not None else []
    _compare_events(
        check,
        what,
        list(zip(ops, versions, strict=True)),
        [("insert" if i == 0 else "update", v) for i, v in enumerate(expected)],
    )


def _compare_events(
    check: LogCheck, what: str, logged: list[tuple[str, Any]], expected: list[tuple[str, Any]]
) -> None:
    if logged == expected:
        return
    seen = [v for _, v in logged if v is not None]
    if len(seen) != len(set(seen)) or len(logged) > len(expected):
        check.note("duplicates", f"{what}: logged {logged[:12]}, upstream {expected[:12]}")
    elif seen != sorted(seen):
        check.note("out_of_order", f"{what}: logged {logged[:12]}, upstream {expected[:12]}")
    else:
        check.note("gaps", f"{what}: logged {logged[:12]}, upstream {expected[:12]}")


def check_noop_entries(db: Path, check: LogCheck) -> None:
    """No update entry may leave its row as it was (that would be a duplicate)."""
    for seq, tbl, key, op, changed, _old in log_entries(db):
        if op == "update" and not changed:
            check.note("duplicates", f"seq {seq} ({tbl} {key}) changed no column")
