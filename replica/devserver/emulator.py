"""One emulator instance: its database, shapes, keys, runs, object store and faults.

The HTTP routes, the simulator, the admin API and `DevServer`'s Python methods all act on
this object. It is safe to use from several threads (the database lock serialises writes).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import shutil
import tempfile
from typing import Any

from replica.devserver.auth import Authenticator
from replica.devserver.clock import Clock
from replica.devserver.config import REALTIME_BACKENDS, DevServerConfig
from replica.devserver.electric_api import InitialResponseCache
from replica.devserver.faults import Faults
from replica.devserver.native_backend import NativeBackend
from replica.devserver.packets import ObjectStore
from replica.devserver.request_counts import RequestCounter
from replica.devserver.runs import RunService
from replica.devserver.shapes import Shape, ShapeRegistry
from replica.devserver.tables import Database
from replica.devserver.ttl_cache import TtlCache

log = logging.getLogger(__name__)


def environment_id_for(secret_key: str) -> str:
    """A stable runtime-environment id derived from the secret key (cuid-like)."""
    digest = hashlib.sha256(secret_key.encode()).hexdigest()
    return "cm" + format(int(digest[:30], 16), "x")[:23].rjust(23, "0")


class Emulator:
    """State shared by every part of the dev server."""

    def __init__(self, config: DevServerConfig) -> None:
        if config.realtime_backend not in REALTIME_BACKENDS:
            raise ValueError(
                f"unknown realtime backend {config.realtime_backend!r}: "
                f"use one of {', '.join(REALTIME_BACKENDS)}"
            )
        self.config = config
        #: The emulator's time: runs, tag windows and remembered windows follow it.
        self.clock = Clock()
        self._tmpdir: str | None = None
        if config.db_path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="replica-devserver-")
            path = os.path.join(self._tmpdir, "devserver.db")
        else:
            path = config.db_path
        self.db = Database(path)
        self.registry = ShapeRegistry(
            self.db,
            chunk_bytes=config.chunk_bytes,
            chunk_rows=config.chunk_rows,
            log_chunk_bytes=config.log_chunk_bytes,
        )
        self.environment_id = environment_id_for(config.secret_key)
        self.auth = Authenticator(config.secret_key, self.environment_id)
        self.objects = ObjectStore(self.db, config.secret_key)
        self.runs = RunService(
            self.db,
            self.objects,
            self.environment_id,
            offload_threshold=config.payload_offload_threshold,
            clock=self.clock.now,
        )
        self.faults = Faults(config.seed)
        self.initial_responses = InitialResponseCache()
        #: Electric backend: the `createdAt` floor of each tag-feed handle (webapp: a cache).
        self.handle_windows: TtlCache[dt.datetime] = TtlCache(
            self.clock, config.handle_window_ttl, max_entries=100_000
        )
        #: The native backend, when the realtime routes behave like it.
        self.native = NativeBackend(self) if config.realtime_backend == "native" else None
        #: Batch item indexes already accepted (2-phase batches dedupe by index).
        self.batch_items: dict[str, set[Any]] = {}
        #: Live requests in flight on the Trigger.dev routes (the concurrency limit counts them).
        self.live_requests = 0
        #: Shape requests answered, per route and kind (what reaches the upstream).
        self.requests = RequestCounter()
        #: Set at shutdown: long-polls answer at once.
        self.closing = False

    # -- shapes -------------------------------------------------------------------------

    def rotate(self, handle: str | None = None, table: str | None = None) -> list[str]:
        """Retire shape handles (409 for their clients); all shapes when neither is given."""
        if handle is not None:
            shape = self.registry.by_handle(handle)
            if shape is None:
                return []
            self.registry.rotate(shape)
            return [handle]
        if table is not None:
            return self.registry.rotate_table(self.db.table(table))
        shapes = self.registry.shapes()
        for shape in shapes:
            self.registry.rotate(shape)
        return [s.handle for s in shapes]

    def shape_info(self, shape: Shape) -> dict[str, Any]:
        d = shape.definition
        return {
            "handle": shape.handle,
            "table": d.table.qualified,
            "where": d.where.sql if d.where else None,
            "params": dict(d.params),
            "columns": list(d.columns),
            "replica": d.replica,
            "log": d.log_mode,
            "rows": shape.rows,
            "chunks": shape.chunk_count,
            "snapshot_complete": shape.snapshot_complete,
            "log_entries": shape.log_entries,
            "latest_offset": str(shape.latest),
            "created_lsn": shape.created_lsn,
        }

    def handle_window_info(self) -> list[dict[str, Any]]:
        """The tag windows the Electric backend remembers, with their ages in seconds."""
        return [
            {
                "handle": handle,
                "created_at_floor": floor.isoformat(timespec="milliseconds") + "Z",
                "age": round(age, 3),
            }
            for handle, floor, age in self.handle_windows.ages()
        ]

    def wake_all(self) -> None:
        """Answer every pending long-poll now (at shutdown)."""
        self.registry.wake_all()
        if self.native is not None:
            self.registry.wake([self.native.changes])

    def close(self) -> None:
        self.closing = True
        self.wake_all()
        self.db.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
