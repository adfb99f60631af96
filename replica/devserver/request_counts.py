"""Counts of the shape requests the emulator answers, per route and kind: what reaches the
upstream when a cache or a proxy sits in front of it (`GET /_replica/requests`).

A request is counted by what it asks (`initial`: `offset=-1` or `now`, `catch-up`: a
non-live read at an offset, `live`: a long-poll), and an answer that is not a 200 once more
under its status (`304`, `409`, `429`, ...). The most live requests in flight at once are
kept per route too. Injected faults count as answers: the middleware sits outside them.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send


def shape_route(path: str) -> str | None:
    """The template of a shape route's path (a run or batch id makes no route of its own),
    or None for any other path."""
    if path in ("/v1/shape", "/realtime/v1/runs"):
        return path
    for prefix, template in (
        ("/realtime/v1/runs/", "/realtime/v1/runs/{run_id}"),
        ("/realtime/v1/batches/", "/realtime/v1/batches/{batch_id}"),
    ):
        if path.startswith(prefix) and "/" not in path[len(prefix) :]:
            return template
    return None


def request_kind(query: dict[str, list[str]]) -> str:
    """`initial`, `catch-up` or `live`, with Electric's reading of `live` (§1.1)."""
    if query.get("live", ["false"])[0] != "false":
        return "live"
    if query.get("offset", ["-1"])[0] in ("-1", "now"):
        return "initial"
    return "catch-up"


@dataclass(frozen=True)
class RequestTally:
    """Counts since the last reset: `counts[route][kind or status]`, `live_peak[route]`."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    live_peak: dict[str, int] = field(default_factory=dict)

    def total(self, key: str) -> int:
        """`key` (a kind like `live`, or a status like `429`) summed over every route."""
        return sum(by_key.get(key, 0) for by_key in self.counts.values())

    def to_json(self) -> dict[str, Any]:
        return {"counts": self.counts, "live_peak": self.live_peak}


class RequestCounter:
    """The running counts; thread-safe (the admin API and `DevServer` read them while serving)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[str]] = {}
        self._live_now: Counter[str] = Counter()
        self._live_peak: Counter[str] = Counter()

    def started(self, route: str, kind: str) -> None:
        with self._lock:
            self._counts.setdefault(route, Counter())[kind] += 1
            if kind == "live":
                self._live_now[route] += 1
                self._live_peak[route] = max(self._live_peak[route], self._live_now[route])

    def answered(self, route: str, status: int) -> None:
        if status != 200:
            with self._lock:
                self._counts.setdefault(route, Counter())[str(status)] += 1

    def finished(self, route: str, kind: str) -> None:
        if kind == "live":
            with self._lock:
                self._live_now[route] -= 1

    def tally(self) -> RequestTally:
        with self._lock:
            return self._tally()

    def reset(self) -> RequestTally:
        """Start counting afresh (requests in flight stay in flight); the counts before."""
        with self._lock:
            before = self._tally()
            self._counts.clear()
            self._live_peak = Counter(+self._live_now)
        return before

    def _tally(self) -> RequestTally:
        return RequestTally(
            {route: dict(by_key) for route, by_key in self._counts.items()},
            {route: peak for route, peak in self._live_peak.items() if peak},
        )


class RequestCountMiddleware:
    """ASGI middleware counting every GET/HEAD of a shape route, outside the fault rules."""

    def __init__(self, app: ASGIApp, counter: RequestCounter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = shape_route(scope.get("path", "")) if scope["type"] == "http" else None
        if route is None or scope.get("method") not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        kind = request_kind(parse_qs(scope.get("query_string", b"").decode("latin-1")))
        self.counter.started(route, kind)

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.counter.answered(route, message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self.counter.finished(route, kind)
