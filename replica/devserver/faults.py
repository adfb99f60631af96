"""Fault injection: delays, 5xx with Retry-After, 429, dropped connections, stale replays.

Rules come from `--fault KIND[:key=value,...]` flags, the admin API
(`POST /_replica/faults`) or `DevServer.add_fault(...)`. Each rule matches requests by path
prefix and live-ness, fires on every Nth match or with a probability (seeded), and can be
limited to a number of firings. Admin routes (`/_replica/...`) are never faulted.
Handle rotation is an action rather than a per-request fault: see `Emulator.rotate`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs

import orjson

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from replica.devserver.emulator import Emulator

log = logging.getLogger(__name__)

FaultKind = Literal["delay", "error", "429", "drop", "stale"]
KINDS: tuple[str, ...] = ("delay", "error", "429", "drop", "stale")


class FaultSpecError(ValueError):
    """A `--fault` spec or admin fault body that does not parse."""


@dataclass
class FaultRule:
    """One fault: what to do, to which requests, how often."""

    kind: FaultKind
    #: Requests whose path starts with this (default: every emulated route).
    path: str = "/"
    #: Only live requests (True), only non-live ones (False), or both (None).
    live: bool | None = None
    #: Fire on every Nth matching request (1 = every one).
    every: int = 1
    #: Fire with this probability instead (seeded, so runs are repeatable).
    probability: float | None = None
    #: Stop after this many firings (None = unlimited).
    times: int | None = None
    #: delay: seconds to hold the request before serving it.
    seconds: float = 1.0
    #: error: the 5xx status; 429 and error: the Retry-After header (None = absent).
    status: int = 503
    retry_after: int | None = 1
    id: int = 0
    matched: int = field(default=0, repr=False)
    fired: int = field(default=0, repr=False)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_fault_spec(spec: str) -> FaultRule:
    """`error:status=503,retry_after=2,every=3` -> FaultRule (FaultSpecError if invalid)."""
    kind, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise FaultSpecError(f"fault option {item!r} is not key=value")
        options[key.strip().replace("-", "_")] = value.strip()
    return make_rule(kind.strip(), options)


def make_rule(kind: str, options: dict[str, Any]) -> FaultRule:
    """Build a rule from a kind and loosely typed options (CLI strings or JSON values)."""
    if kind == "rate-limit":
        kind = "429"
    if kind not in KINDS:
        raise FaultSpecError(f"unknown fault kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "429":
        options.setdefault("retry_after", None)
    fields = {f for f in FaultRule.__dataclass_fields__ if f not in ("id", "matched", "fired")}
    unknown = set(options) - fields - {"kind"}
    if unknown:
        raise FaultSpecError(f"unknown fault option(s): {', '.join(sorted(unknown))}")
    converters: dict[str, Any] = {
        "every": int,
        "times": _optional(int),
        "seconds": float,
        "status": int,
        "retry_after": _optional(int),
        "probability": _optional(float),
        "live": _optional_bool,
        "path": str,
    }
    try:
        typed = {k: converters[k](v) for k, v in options.items() if k != "kind"}
    except (TypeError, ValueError) as exc:
        raise FaultSpecError(f"bad fault option value: {exc}") from None
    rule = FaultRule(kind=kind, **typed)  # type: ignore[arg-type]
    if rule.every < 1:
        raise FaultSpecError("every must be >= 1")
    return rule


def _optional(convert: Any) -> Any:
    def parse(value: Any) -> Any:
        if value is None or value in ("", "none", "null"):
            return None
        return convert(value)

    return parse


def _optional_bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("", "any", "none", "null"):
        return None
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"live must be true, false or any, not {value!r}")


class Faults:
    """The active rules; thread-safe (the admin API and tests change them while serving)."""

    def __init__(self, seed: int = 0) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._next_id = 1

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            rule.id = self._next_id
            self._next_id += 1
            self._rules.append(rule)
        log.info("fault armed: %s", rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def remove(self, rule_id: int) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def pick(self, path: str, live: bool, kinds: tuple[str, ...]) -> FaultRule | None:
        """The first rule of `kinds` that fires for this request (counting it)."""
        with self._lock:
            for rule in self._rules:
                if rule.kind not in kinds or not path.startswith(rule.path):
                    continue
                if rule.live is not None and rule.live != live:
                    continue
                if rule.times is not None and rule.fired >= rule.times:
                    continue
                rule.matched += 1
                if rule.probability is not None:
                    fire = self._random.random() < rule.probability
                else:
                    fire = rule.matched % rule.every == 0
                if fire:
                    rule.fired += 1
                    return rule
        return None

    def take_stale(self, identity: tuple[Any, ...], emu: Emulator) -> Any:
        """A cached `offset=-1` response of a retired handle, if a `stale` rule fires."""
        if not any(r.kind == "stale" for r in self._rules):
            return None
        found = emu.initial_responses.stale(identity, emu.registry.is_retired)
        if found is None:
            return None
        rule = self.pick("/", False, ("stale",))
        return found if rule is not None else None


class _InjectedDrop(Exception):
    """Raised to make the server close a connection mid-body (a `drop` fault)."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _InjectedDrop)


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


class FaultMiddleware:
    """ASGI middleware applying delay/error/429/drop rules to non-admin HTTP requests."""

    def __init__(self, app: ASGIApp, emu: Emulator) -> None:
        self.app = app
        self.emu = emu

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith("/_replica") or not self.emu.faults._rules:
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        live = query.get("live", ["false"])[0] != "false" and "live" in query
        rule = self.emu.faults.pick(path, live, ("delay", "error", "429", "drop"))
        if rule is None:
            await self.app(scope, receive, send)
            return
        log.debug("fault %s fires on %s", rule.kind, path)
        if rule.kind == "delay":
            await asyncio.sleep(rule.seconds)
            await self.app(scope, receive, send)
        elif rule.kind in ("error", "429"):
            await self._refuse(send, rule, path)
        else:
            await self.app(scope, receive, _dropping_send(send))

    async def _refuse(self, send: Send, rule: FaultRule, path: str) -> None:
        if rule.kind == "429":
            status = 429
            body: dict[str, Any] = (
                {"error": "Too many concurrent requests"}
                if path.startswith("/realtime")
                else {"message": "Too many requests (injected fault)"}
            )
        else:
            status = rule.status
            body = {"message": f"Service unavailable (injected fault, HTTP {status})"}
        headers = [
            (b"content-type", b"application/json"),
            (b"cache-control", b"no-store"),
            (b"access-control-allow-origin", b"*"),
            (b"access-control-expose-headers", b"retry-after"),
        ]
        if rule.retry_after is not None:
            headers.append((b"retry-after", str(rule.retry_after).encode()))
        payload = orjson.dumps(body)
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def _dropping_send(send: Send) -> Send:
    """A `send` that lets the headers and half the body through, then kills the connection."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.body":
            body = message.get("body", b"")
            await send(
                {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
            )
            raise _InjectedDrop("connection dropped mid-body (injected fault)")
        await send(message)

    return wrapped
