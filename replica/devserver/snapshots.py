"""Rendering a shape's snapshot into chunks, in the background, from a pinned read snapshot.

The builder is created under the database lock (so its SQLite read transaction sees exactly
the state at the shape's creation) and then renders rows in small steps: on the server's
event loop between requests, or all at once when no loop is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from replica.devserver.shapes import Shape, ShapeRegistry

log = logging.getLogger(__name__)


class SnapshotBuilder:
    """Renders a shape's snapshot into chunks from a read snapshot pinned at creation."""

    def __init__(self, registry: ShapeRegistry, shape: Shape) -> None:
        self.registry = registry
        self.shape = shape
        db = registry.db
        self._reader_cm = db.snapshot_reader()
        self._reader: sqlite3.Connection = self._reader_cm.__enter__()
        self.xmin = str(db.txid + 1)
        self._cursor: sqlite3.Cursor | None = None
        if shape.definition.log_mode != "changes_only":
            storage = shape.definition.table.storage
            self._cursor = self._reader.execute(f"SELECT key, row FROM {storage} ORDER BY rid")
        self._parts: list[bytes] = []
        self._size = 0

    def _flush(self, final: bool) -> None:
        shape = self.shape
        if final:
            self._parts.append(
                orjson.dumps(
                    {
                        "headers": {
                            "control": "snapshot-end",
                            "xmin": self.xmin,
                            "xmax": self.xmin,
                            "xip_list": [],
                        }
                    }
                )
            )
        body = b",".join(self._parts)
        db = self.registry.db
        with db.lock:
            if not shape.rotated:
                db.connection.execute(
                    "INSERT INTO _shape_chunks (shape_id, idx, body) VALUES (?, ?, ?)",
                    (shape.id, shape.chunk_count, body),
                )
            shape.chunk_count += 1
            if final:
                shape.snapshot_complete = True
        self._parts, self._size = [], 0
        self.registry.wake([shape])

    def step(self, max_rows: int) -> bool:
        """Render up to `max_rows` source rows; True once the snapshot is complete."""
        shape = self.shape
        limit_bytes = self.registry.chunk_bytes
        limit_rows = self.registry.chunk_rows
        render = shape.render_snapshot_row
        batch = self._fetch(max_rows)
        parts = self._parts
        for key, blob in batch:
            message = render(key, blob)
            if message is None:
                continue
            parts.append(message)
            self._size += len(message)
            shape.rows += 1
            if self._size >= limit_bytes or (limit_rows and len(parts) >= limit_rows):
                self._flush(final=False)
                parts = self._parts
        if len(batch) < max_rows:
            self._flush(final=True)
            self._close()
            return True
        return shape.rotated and self._close() is None

    def _fetch(self, count: int) -> list[tuple[str, bytes]]:
        if self._cursor is None:
            return []
        return self._cursor.fetchmany(count)

    def _close(self) -> None:
        with contextlib.suppress(Exception):
            self._reader_cm.__exit__(None, None, None)

    def run_sync(self) -> None:
        try:
            while not self.step(10_000):
                pass
        except Exception as exc:
            self._fail(exc)

    async def run_async(self) -> None:
        try:
            # Small steps keep the event loop responsive while large snapshots render.
            done = False
            while not done:
                done = self.step(500)
                await asyncio.sleep(0)
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        log.exception("snapshot of shape %s failed", self.shape.handle)
        self.shape.snapshot_error = str(exc) or type(exc).__name__
        self._close()
        self.registry.rotate(self.shape)
