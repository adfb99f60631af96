"""A bounded map whose entries expire a set time after their last write, on the emulator clock.

Two webapp caches behave this way and decide what a resuming client gets: the Electric
backend's `createdAt` window per tag-feed handle and the native backend's working set per
handle. Like the webapp's `BoundedTtlCache`, reading an entry does not refresh it, and a write
at capacity sweeps expired entries, then drops the oldest.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

from replica.devserver.clock import Clock

V = TypeVar("V")


class TtlCache(Generic[V]):
    """key -> value, each entry gone `ttl` seconds after it was last written."""

    def __init__(self, clock: Clock, ttl: float, max_entries: int) -> None:
        self.clock = clock
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[V, float]] = {}
        self._lock = threading.Lock()

    def _live(self, written_at: float, now: float) -> bool:
        return now - written_at < self.ttl

    def get(self, key: str) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if not self._live(entry[1], self.clock.time()):
                del self._entries[key]
                return None
            return entry[0]

    def set(self, key: str, value: V) -> None:
        now = self.clock.time()
        with self._lock:
            entries = self._entries
            if key not in entries and len(entries) >= self.max_entries:
                for stale in [k for k, (_, at) in entries.items() if not self._live(at, now)]:
                    del entries[stale]
                if len(entries) >= self.max_entries:
                    del entries[next(iter(entries))]
            entries[key] = (value, now)

    def forget(self, key: str | None = None) -> int:
        """Drop one entry (or all of them); returns how many were dropped."""
        with self._lock:
            if key is None:
                count = len(self._entries)
                self._entries.clear()
                return count
            return 0 if self._entries.pop(key, None) is None else 1

    def ages(self) -> Iterator[tuple[str, V, float]]:
        """(key, value, seconds since its last write) of every live entry."""
        now = self.clock.time()
        with self._lock:
            entries = list(self._entries.items())
        for key, (value, at) in entries:
            if self._live(at, now):
                yield key, value, now - at
