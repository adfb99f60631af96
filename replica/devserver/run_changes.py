"""Recent writes to `TaskRun`, in commit order, for the native backend's live polls.

The webapp's native backend hears about run changes from one change stream per environment
and replays a connection's inter-poll gap from it (`envChangeRouter.server.ts`); this is the
emulator's equivalent: every committed run row gets a position, a poll remembers the last
position it has seen, and waiting polls are woken on each commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque

from replica.devserver.shapes import ShapeRegistry
from replica.devserver.tables import Database, Row, Table, Transaction
from replica.protocol.deadline import within

#: How many run writes are kept for replay; a poll whose gap is older resolves afresh.
KEEP = 10_000


class RunChanges:
    """The last `keep` run rows written, each at a position; `position` is the newest."""

    def __init__(
        self, db: Database, table: Table, registry: ShapeRegistry, keep: int = KEEP
    ) -> None:
        self.table = table
        self.registry = registry
        self.position = 0
        self._rows: deque[tuple[int, Row]] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._event = asyncio.Event()
        db.add_commit_hook(self._after_commit, after=True)

    def _after_commit(self, txn: Transaction) -> None:
        rows = [c.new for c in txn.changes if c.table is self.table and c.new is not None]
        if not rows:
            return
        with self._lock:
            for row in rows:
                self.position += 1
                self._rows.append((self.position, row))
        self.registry.wake([self])

    def wake(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    def since(self, position: int) -> tuple[list[Row], int] | None:
        """The latest row of each run written after `position`, and the newest position;
        None when writes after `position` are no longer kept."""
        with self._lock:
            end = self.position
            if position >= end:
                return [], end
            if not self._rows or self._rows[0][0] > position + 1:
                return None
            latest: dict[str, Row] = {}
            for pos, row in reversed(self._rows):
                if pos <= position:
                    break
                latest.setdefault(str(row["id"]), row)
        return list(latest.values()), end

    async def wait(self, position: int, timeout: float) -> None:
        """Return once a run is written after `position`, on `wake()`, or after `timeout`."""
        if self.position > position or timeout <= 0:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await within(self._event.wait(), timeout)
