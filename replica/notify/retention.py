"""Change-log retention: what the sync process prunes from `_replica_changes`, and when.

An entry goes once every durable consumer has acknowledged it and it is older than
`min_age` (a grace period for listeners without a durable cursor, e.g. `replica watch`
without `--consumer`), or, whatever the consumers, once it is older than `max_age`. The
highest pruned sequence number is kept in `_replica_log_state.pruned_through`: a reader whose
cursor is below it receives a `reset` instead of silently missing changes.

Pruning runs in the sync process (the one writer of the log), on the engine's writer
thread: when the engine starts and then after commits, at most every `interval` seconds or
after `batch_changes` new changes, deleting at most `max_rows` per call in short
transactions, so a large backlog never stalls syncing.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from replica.errors import ReplicaError

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE = timedelta(days=7)
DEFAULT_MIN_AGE = timedelta(hours=1)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `12h`, `7d`, `2w` as a timedelta."""
    match = _DURATION.match(text)
    if not match:
        raise ReplicaError(
            f"cannot read the duration {text!r}", hint="use a number and a unit: 90s, 15m, 12h, 7d"
        )
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def default_max_age() -> timedelta:
    """`REPLICA_CHANGES_MAX_AGE` (e.g. `7d`), else 7 days."""
    text = os.environ.get("REPLICA_CHANGES_MAX_AGE")
    return parse_duration(text) if text else DEFAULT_MAX_AGE


@dataclass(frozen=True)
class PruneResult:
    deleted: int
    pruned_through: int


@dataclass
class Retention:
    """When and how much of the change log to prune (see the module docstring)."""

    max_age: timedelta = field(default_factory=default_max_age)
    min_age: timedelta = DEFAULT_MIN_AGE
    interval: float = 300.0
    batch_changes: int = 10_000
    max_rows: int = 100_000
    chunk: int = 5_000
    _last_run: float | None = field(default=None, repr=False)
    _since: int = field(default=0, repr=False)

    def due(self, new_changes: int) -> bool:
        """Count `new_changes` just committed; True when it is time to prune."""
        self._since += new_changes
        if self._last_run is None:
            return True
        return (
            self._since >= self.batch_changes or time.monotonic() - self._last_run >= self.interval
        )

    def prune(self, conn: sqlite3.Connection, *, now: datetime | None = None) -> PruneResult:
        """Delete what may go (on the writer's connection, outside any transaction)."""
        self._last_run, self._since = time.monotonic(), 0
        now = now or datetime.now(timezone.utc)
        through = self.boundary(conn, now)
        deleted = 0
        floor = _pruned_through(conn)
        while floor < through and deleted < self.max_rows:
            upto = min(through, floor + self.chunk)
            conn.execute("BEGIN IMMEDIATE")
            try:
                cursor = conn.execute("DELETE FROM _replica_changes WHERE seq <= ?", (upto,))
                deleted += cursor.rowcount
                conn.execute(
                    "UPDATE _replica_log_state SET pruned_through = max(pruned_through, ?), "
                    "pruned_at = ? WHERE id = 1",
                    (upto, _iso(now)),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            floor = upto
        if deleted:
            log.info("pruned %d change-log entries (through seq %d)", deleted, floor)
        return PruneResult(deleted, floor)

    def boundary(self, conn: sqlite3.Connection, now: datetime) -> int:
        """The highest sequence number that may be pruned now."""
        too_old = _first_seq_since(conn, _iso(now - self.max_age)) - 1
        grace = _first_seq_since(conn, _iso(now - self.min_age)) - 1
        row = conn.execute("SELECT min(last_seq) FROM _replica_consumers").fetchall()
        acknowledged = row[0][0]
        if acknowledged is None:  # no durable consumer: only the grace period protects
            acknowledged = grace
        return max(too_old, min(acknowledged, grace), 0)


def _first_seq_since(conn: sqlite3.Connection, cutoff: str) -> int:
    """The first sequence number committed at or after `cutoff` (head + 1 if none).

    Scans from the oldest entry: commit times grow with `seq`, so this reads the entries
    older than the cutoff and one more.
    """
    rows = conn.execute(
        "SELECT seq FROM _replica_changes WHERE committed_at >= ? ORDER BY seq LIMIT 1", (cutoff,)
    ).fetchall()
    if rows:
        return int(rows[0][0])
    head = conn.execute(
        "SELECT seq FROM sqlite_sequence WHERE name = '_replica_changes'"
    ).fetchall()
    return (int(head[0][0]) if head else 0) + 1


def _pruned_through(conn: sqlite3.Connection) -> int:
    rows = conn.execute("SELECT pruned_through FROM _replica_log_state WHERE id = 1").fetchall()
    return int(rows[0][0]) if rows else 0


def _iso(moment: datetime) -> str:
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


__all__ = ["DEFAULT_MAX_AGE", "PruneResult", "Retention", "default_max_age", "parse_duration"]
