"""Durable consumers: named cursors in `_replica_consumers`, their leases and failures.

A consumer's `last_seq` is the last change it acknowledged; after a crash delivery resumes
right after it (at-least-once, in commit order). One listener process at a time delivers to
a name: it holds a lease (`owner`, `lease_until`), renewed while it runs and taken over
when it expires, or at once when the owner was a process on this host that no longer
exists (so a killed listener's replacement does not wait out the lease).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from replica.errors import ReplicaError
from replica.iso_time import now_iso

log = logging.getLogger(__name__)

ConsumerState = Literal["ok", "retrying", "parked"]

#: How long a lease lasts without renewal (seconds). Renewed every third of it.
LEASE_SECONDS = 15.0

_COLUMNS = (
    "name, tbl, filter, ops, state, last_seq, attempts, failed_seq, last_error, retry_at, "
    "owner, lease_until, created_at, updated_at"
)


class ConsumerError(ReplicaError):
    """A consumer cannot be registered or changed as asked."""


@dataclass(frozen=True)
class RetryPolicy:
    """How a failing callback is retried: `attempts` deliveries in all (the first included),
    waiting `initial * factor**n` seconds (at most `maximum`) between them; then the
    consumer is parked."""

    attempts: int = 5
    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failure in a row."""
        return float(min(self.maximum, self.initial * self.factor ** max(0, failures - 1)))


@dataclass(frozen=True)
class ConsumerStatus:
    """A durable consumer as stored (what `replica status` shows)."""

    name: str
    table: str | None
    where: str | None
    ops: tuple[str, ...] | None
    state: ConsumerState
    last_seq: int
    attempts: int
    failed_seq: int | None
    last_error: str | None
    retry_at: str | None
    owner: str | None
    lease_until: float | None
    created_at: str | None
    updated_at: str | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> ConsumerStatus:
        values = list(row)
        values[3] = tuple(json.loads(values[3])) if values[3] else None
        return cls(*values)

    @property
    def active(self) -> bool:
        """True while a listener holds its lease."""
        return self.owner is not None and (self.lease_until or 0) > time.time()


def make_owner() -> str:
    """An identity for one listener: `host:pid:random`."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _owner_gone(owner: str) -> bool:
    """True if `owner` was a process on this host that has exited."""
    rest, _, _token = owner.rpartition(":")
    host, _, pid_text = rest.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, but not ours to signal
        return False
    return False


def lease_free(owner: str | None, until: float | None, me: str) -> bool:
    """Whether `me` may take a lease held by `owner` until `until`."""
    return owner is None or owner == me or (until or 0) < time.time() or _owner_gone(owner)


class ConsumerCursors:
    """Reads and writes consumer rows on a writable connection (each call one transaction,
    unless `conn` given for a transaction the caller owns)."""

    def __init__(self, conn: sqlite3.Connection, owner: str | None = None) -> None:
        self.conn = conn
        self.owner = owner or make_owner()

    # -- reading ----------------------------------------------------------------------

    def get(self, name: str) -> ConsumerStatus | None:
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM _replica_consumers WHERE name = ?", (name,)
        ).fetchall()
        return ConsumerStatus.from_row(row[0]) if row else None

    def all(self) -> list[ConsumerStatus]:
        rows = self.conn.execute(f"SELECT {_COLUMNS} FROM _replica_consumers ORDER BY name")
        return [ConsumerStatus.from_row(row) for row in rows.fetchall()]

    # -- registering ----------------------------------------------------------------------

    def register(
        self,
        name: str,
        *,
        start: int,
        table: str | None,
        where: str | None,
        ops: Iterable[str] | None,
    ) -> ConsumerStatus:
        """Create the consumer at cursor `start` if new; record what it follows. An
        existing consumer keeps its cursor (and its parked state: see `resume`)."""
        if not name or not name.strip():
            raise ConsumerError("a consumer name cannot be empty")
        now = now_iso()
        ops_text = json.dumps(sorted(ops)) if ops is not None else None
        self.conn.execute(
            "INSERT INTO _replica_consumers (name, last_seq, tbl, filter, ops, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "tbl = excluded.tbl, filter = excluded.filter, ops = excluded.ops",
            (name, start, table, where, ops_text, now, now),
        )
        status = self.get(name)
        assert status is not None
        return status

    def drop(self, name: str) -> bool:
        """Forget a consumer (its cursor no longer holds back log retention)."""
        cursor = self.conn.execute("DELETE FROM _replica_consumers WHERE name = ?", (name,))
        return cursor.rowcount > 0

    # -- leases ---------------------------------------------------------------------------

    def claim(self, name: str, ttl: float = LEASE_SECONDS) -> bool:
        """Take the consumer's lease if it is free, expired, ours, or its owner is gone."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT owner, lease_until FROM _replica_consumers WHERE name = ?", (name,)
            ).fetchall()
            if not row:
                conn.execute("ROLLBACK")
                return False
            owner, until = row[0]
            free = lease_free(owner, until, self.owner)
            if free:
                conn.execute(
                    "UPDATE _replica_consumers SET owner = ?, lease_until = ? WHERE name = ?",
                    (self.owner, time.time() + ttl, name),
                )
            conn.execute("COMMIT")
            return free
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def renew(self, name: str, ttl: float = LEASE_SECONDS) -> bool:
        """Extend our lease; False if it was lost (someone took it over)."""
        cursor = self.conn.execute(
            "UPDATE _replica_consumers SET lease_until = ? WHERE name = ? AND owner = ?",
            (time.time() + ttl, name, self.owner),
        )
        return cursor.rowcount > 0

    def release(self, name: str) -> None:
        self.conn.execute(
            "UPDATE _replica_consumers SET owner = NULL, lease_until = NULL "
            "WHERE name = ? AND owner = ?",
            (name, self.owner),
        )

    # -- progress -------------------------------------------------------------------------

    def ack(
        self,
        name: str,
        seq: int,
        *,
        conn: sqlite3.Connection | None = None,
        ttl: float = LEASE_SECONDS,
    ) -> bool:
        """Move the cursor to `seq` (clearing any failure) if we still hold the lease.

        With `conn`, the update joins the caller's open transaction (exactly-once delivery
        when the caller's own writes commit with it)."""
        cursor = (conn or self.conn).execute(
            "UPDATE _replica_consumers SET last_seq = ?, state = 'ok', attempts = 0, "
            "failed_seq = NULL, last_error = NULL, retry_at = NULL, lease_until = ?, "
            "updated_at = ? WHERE name = ? AND owner = ? AND last_seq <= ?",
            (seq, time.time() + ttl, now_iso(), name, self.owner, seq),
        )
        return cursor.rowcount > 0

    def failed(
        self,
        name: str,
        seq: int,
        error: str,
        *,
        attempts: int,
        retry_at: str | None,
        parked: bool,
    ) -> None:
        """Record a failed delivery of change `seq` (retrying, or parked)."""
        self.conn.execute(
            "UPDATE _replica_consumers SET state = ?, attempts = ?, failed_seq = ?, "
            "last_error = ?, retry_at = ?, updated_at = ? WHERE name = ? AND owner = ?",
            (
                "parked" if parked else "retrying",
                attempts,
                seq,
                error,
                None if parked else retry_at,
                now_iso(),
                name,
                self.owner,
            ),
        )

    def resume(self, name: str, *, skip: bool = False) -> ConsumerStatus:
        """Make a parked (or retrying) consumer deliver again, from the change it failed
        on, or after it with `skip`."""
        status = self.get(name)
        if status is None:
            raise ConsumerError(f"no consumer named {name!r}")
        cursor = status.last_seq
        if skip and status.failed_seq is not None:
            cursor = max(cursor, status.failed_seq)
        self.conn.execute(
            "UPDATE _replica_consumers SET state = 'ok', attempts = 0, failed_seq = NULL, "
            "last_error = NULL, retry_at = NULL, last_seq = ?, updated_at = ? WHERE name = ?",
            (cursor, now_iso(), name),
        )
        resumed = self.get(name)
        assert resumed is not None
        return resumed


__all__ = [
    "LEASE_SECONDS",
    "ConsumerCursors",
    "ConsumerError",
    "ConsumerState",
    "ConsumerStatus",
    "RetryPolicy",
    "lease_free",
    "make_owner",
]
