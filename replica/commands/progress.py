"""Feedback while `replica sync` runs: rows received and rate during initial snapshots.

On a terminal one line is redrawn in place; otherwise a log line appears every few seconds.
Each shape says once, as soon as it is, that it is up to date (the engine calls `report`
when a shape's state changes).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

from replica.engine import Engine

log = logging.getLogger("replica.sync")


class Progress:
    """Reports an engine's progress until cancelled."""

    def __init__(self, engine: Engine, *, live_line: bool, interval: float | None = None) -> None:
        self.engine = engine
        self.live_line = live_line
        self.interval = interval or (0.5 if live_line else 10.0)
        self._announced: set[str] = set()
        self._drawn = False
        engine.on_state = self.report  # "up to date" is said when it happens

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.report()

    def report(self) -> None:
        now = time.monotonic()
        busy = []
        for key, shape in list(self.engine.progress.items()):
            if shape.state == "live":
                if key not in self._announced:
                    self._announced.add(key)
                    self._clear()
                    log.info("%s: up to date, %d rows", shape.label, shape.rows)
                continue
            rate = shape.received / max(now - shape.started, 1e-6)
            busy.append(f"{shape.label}: {shape.received:,} rows received ({rate:,.0f}/s)")
        if not busy:
            self._clear()
            return
        text = "; ".join(busy)
        if self.live_line:
            sys.stderr.write("\r\x1b[K" + text[:200])
            sys.stderr.flush()
            self._drawn = True
        else:
            log.info("%s", text)

    def finish(self) -> None:
        self.report()
        self._clear()

    def _clear(self) -> None:
        if self._drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self._drawn = False
