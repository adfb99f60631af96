"""Folding change messages into rows in memory: the reference semantics of a shape.

The SQLite store applies the same rules durably; this small in-memory form serves tests,
tools and anyone who wants the current rows of a small shape without a database.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from replica.protocol.messages import ChangeMessage
from replica.protocol.stream import Batch


class ShapeRows:
    """Current rows of one shape, keyed by the message `key`.

    insert sets the row (an existing key is overwritten: overlapping snapshots and replays
    happen); update merges the partial value (an unknown key is kept as a row only when
    `changes_only` is False, since a full log always inserts first); delete removes the key
    (missing keys are fine). A `reset` batch clears everything before its changes apply.
    """

    def __init__(self, *, changes_only: bool = False) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.changes_only = changes_only

    def apply_batch(self, batch: Batch) -> None:
        """Apply a batch from `ShapeStream` (`reset` first, then its changes in order)."""
        if batch.reset:
            self.rows.clear()
        self.apply(batch.changes)

    def apply(self, changes: Iterable[ChangeMessage]) -> None:
        """Apply change messages in order."""
        rows = self.rows
        for change in changes:
            op = change.operation
            if op == "insert":
                rows[change.key] = dict(change.value)
            elif op == "update":
                row = rows.get(change.key)
                if row is not None:
                    row.update(change.value)
                elif not self.changes_only:
                    rows[change.key] = dict(change.value)
            else:
                rows.pop(change.key, None)

    def __len__(self) -> int:
        return len(self.rows)
