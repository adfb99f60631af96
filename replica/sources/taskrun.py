"""Raw Trigger.dev `TaskRun` rows (as the realtime feeds send them) → `runs` row changes.

Follows the SDK's `transformRunShape` (trigger-realtime.md §3): friendly id as the public id,
public statuses, UTC timestamps, decoded packets, the public `SerializedError`. The output
is neutral `RowChange`s for `replica.tables.RUNS`; nothing here knows about SQLite.
"""

from __future__ import annotations

import asyncio
import calendar
import datetime as dt
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

from replica.errors import MalformedResponseError
from replica.protocol.messages import ChangeMessage
from replica.protocol.pg_array import parse_pg_array
from replica.sources.packets import (
    STORE_TYPE,
    PacketFetcher,
    PacketLoader,
    format_utc,
    packet_json,
    to_json_text,
)
from replica.tables import RowChange

__all__ = ["STATUS_MAP", "RunMapper", "iso_timestamp", "public_status", "serialized_error"]

logger = logging.getLogger(__name__)

# -- status (§3.3) -------------------------------------------------------------------------------

#: Every `TaskRunStatus` → the public `RunStatus` (the SDK's `apiStatusFromRunStatus`).
STATUS_MAP: Final[Mapping[str, str]] = MappingProxyType(
    {
        "DELAYED": "DELAYED",
        "PENDING": "QUEUED",
        "PENDING_VERSION": "PENDING_VERSION",
        "WAITING_FOR_DEPLOY": "PENDING_VERSION",
        "DEQUEUED": "DEQUEUED",
        "EXECUTING": "EXECUTING",
        "WAITING_TO_RESUME": "WAITING",
        "RETRYING_AFTER_FAILURE": "EXECUTING",
        "PAUSED": "WAITING",
        "CANCELED": "CANCELED",
        "INTERRUPTED": "FAILED",
        "COMPLETED_SUCCESSFULLY": "COMPLETED",
        "COMPLETED_WITH_ERRORS": "FAILED",
        "SYSTEM_FAILURE": "SYSTEM_FAILURE",
        "CRASHED": "CRASHED",
        "EXPIRED": "EXPIRED",
        "TIMED_OUT": "TIMED_OUT",
    }
)
_warned_statuses: set[str] = set()


def public_status(db_status: str) -> str:
    """The public status of a DB status; an unknown one is `QUEUED` (as in the SDK), logged once."""
    status = STATUS_MAP.get(db_status)
    if status is None:
        if db_status not in _warned_statuses and len(_warned_statuses) < 64:
            _warned_statuses.add(db_status)
            logger.warning("unknown run status %r; reporting it as QUEUED", db_status)
        return "QUEUED"
    return status


# -- timestamps (§3.8) -------------------------------------------------------------------------

# Python 3.10's fromisoformat takes neither "+00" nor 1-5 fractional digits: parse by hand.
_TIMESTAMP_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[ T]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?"
    r"(Z|[+-][0-9]{2}(?::?[0-9]{2}){0,2})?"
)
_UTC_OFFSETS = frozenset({None, "Z", "+00", "+00:00", "+0000", "-00", "-00:00", "-0000"})


def iso_timestamp(value: str | dt.datetime | None) -> str | None:
    """`YYYY-MM-DDTHH:MM:SS.sssZ` (UTC, milliseconds truncated) from a wire timestamp.

    Takes Electric's `2026-08-20 09:14:03.512` (0-6 fractional digits), the native backend's
    `2026-08-20T09:14:03.512`, either with an offset (`Z`, `+00`, `+05:30`; converted to
    UTC), or a `datetime`. Zone-less means UTC. Anything else raises `ValueError`.
    """
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return format_utc(value)
    match = _TIMESTAMP_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"not a timestamp: {value!r:.80}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    millis = (fraction or "").ljust(3, "0")[:3]
    # Zero-padded fields compare correctly as text, which is cheaper than int() on a hot path.
    if not (
        year != "0000"
        and "01" <= month <= "12"
        and "01" <= day <= "31"
        and (day <= "28" or int(day) <= calendar.monthrange(int(year), int(month))[1])
        and hour <= "23"
        and minute <= "59"
        and second <= "59"
    ):
        raise ValueError(f"not a valid timestamp: {value!r:.80}")
    if offset in _UTC_OFFSETS:
        return f"{year}-{month}-{day}T{hour}:{minute}:{second}.{millis}Z"
    digits = offset[1:].replace(":", "")
    delta = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
    delta += dt.timedelta(seconds=int(digits[4:] or 0))
    local = dt.datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), int(millis) * 1000
    )
    try:
        return format_utc(local - delta if offset[0] == "+" else local + delta)
    except OverflowError:
        raise ValueError(f"timestamp out of range in UTC: {value!r:.80}") from None


# -- errors (§3.7) -------------------------------------------------------------------------------

# What the SDK's taskRunErrorEnhancer reads from the first 100 characters of a message.
_SIGNAL_CODES = (
    ("SIGTERM", "TASK_PROCESS_SIGTERM"),
    ("SIGSEGV", "TASK_PROCESS_SIGSEGV"),
    ("SIGKILL", "TASK_PROCESS_MAYBE_OOM_KILLED"),
    ("SIGABRT", "TASK_PROCESS_MAYBE_OOM_KILLED"),
)
_EXITED = "TASK_PROCESS_EXITED_WITH_NON_ZERO_CODE"
_OOM = "TASK_PROCESS_OOM_KILLED"


def _signal_code(text: str) -> str | None:
    head = text[:100]
    return next((code for signal, code in _SIGNAL_CODES if signal in head), None)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _internal(code: Any) -> dict[str, Any]:
    return {"message": f"trigger.dev internal error ({code if code is not None else 'UNKNOWN'})"}


def serialized_error(raw: Any) -> dict[str, Any] | None:
    """The public `SerializedError` `{message, name?, stackTrace?}` of a raw `TaskRunError`.

    Applies the SDK's enhancer: `UnexpectedExitError` (exit code -1) and exit-code internal
    errors become the SIGTERM / SIGSEGV / maybe-OOM codes by the signal in their text; the
    ffmpeg SIGKILL and manual `OutOfMemoryError` become `TASK_PROCESS_OOM_KILLED`; internal
    errors read `trigger.dev internal error (CODE)`. Lenient: accepts JSON text, and any
    other shape still gives a `{message}`; never raises.
    """
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError):
            return {"message": raw}
        if parsed is None:
            return None
        raw = parsed
    if not isinstance(raw, Mapping):
        return {"message": _text(raw)}
    kind = raw.get("type")
    name, message, stack = raw.get("name"), raw.get("message"), raw.get("stackTrace")
    if kind == "BUILT_IN_ERROR":
        name_s, message_s = _text(name or ""), _text(message if message is not None else "")
        if name_s == "UnexpectedExitError" and message_s.startswith("Unexpected exit with code -1"):
            return _internal(_signal_code(_text(stack or "")) or _EXITED)
        if (name_s == "Error" and message_s == "ffmpeg was killed with signal SIGKILL") or (
            message_s == "MANUAL_OOM_KILL_ERROR"
        ):
            return _internal(_OOM)
        if name_s == "TriggerApiError" and message_s.startswith("Deadlock detected:"):
            return {"name": "Concurrency Deadlock Error", "message": message_s, "stackTrace": ""}
        out: dict[str, Any] = {"message": message_s}
        if name is not None:
            out["name"] = name_s
        if stack is not None:
            out["stackTrace"] = _text(stack)
        return out
    if kind in ("STRING_ERROR", "CUSTOM_ERROR"):
        return {"message": _text(raw.get("raw", ""))}
    if kind == "INTERNAL_ERROR":
        code = raw.get("code")
        if code == _EXITED:
            code = _signal_code(_text(message or "")) or _EXITED
        return _internal(code if code is None else _text(code))
    # An unknown shape: keep what reads like an error, else the whole thing as text.
    out = {"message": message if isinstance(message, str) else _text(dict(raw))}
    if isinstance(name, str):
        out["name"] = name
    if isinstance(stack, str):
        out["stackTrace"] = stack
    return out


# -- column values -------------------------------------------------------------------------------

_DECIMAL_RE = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_FLOAT_WORDS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
_BOOLS = {"t": True, "true": True, "f": False, "false": False}


class _BadValue(ValueError):
    """A wire value of the wrong type for its column; the message says what was expected."""


# Values come parsed by the feed's schema (int, bool, float, list, dict), but servers may omit
# a column from `electric-schema`, so the raw Postgres text forms are accepted too.
def _as_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if (
        isinstance(value, str)
        and value.isascii()
        and (value.isdigit() or (value[:1] == "-" and value[1:].isdigit()))
    ):
        return int(value)
    raise _BadValue("an integer")


def _as_float(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and _DECIMAL_RE.fullmatch(value):
        return float(value)
    if isinstance(value, str) and value in _FLOAT_WORDS:
        return _FLOAT_WORDS[value]
    raise _BadValue("a number")


def _as_flag(value: Any) -> int:
    flag = (
        value if isinstance(value, bool) else _BOOLS.get(value) if isinstance(value, str) else None
    )
    if flag is None:
        raise _BadValue("a boolean (t, f, true or false)")
    return int(flag)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise _BadValue("a string")


def _as_status(value: Any) -> str:
    return public_status(_as_text(value))


def _as_time(value: Any) -> str | None:
    try:
        return iso_timestamp(value)
    except ValueError:
        raise _BadValue("a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff])") from None


def _as_list(value: Any) -> str:
    """`runTags` / `realtimeStreams` (a list, or Postgres array text) as JSON array text."""
    if isinstance(value, str):
        try:
            value = parse_pg_array(value)
        except ValueError as exc:
            raise _BadValue(f"a Postgres text array ({exc})") from None
    if not isinstance(value, list):
        raise _BadValue("a one-dimensional text array")
    for item in value:
        if item is not None and not isinstance(item, str):
            raise _BadValue("a one-dimensional text array")
    return to_json_text([v for v in value if v is not None] if None in value else value)


def _as_error(value: Any) -> str | None:
    error = serialized_error(value)  # lenient: never raises
    return None if error is None else to_json_text(error)


_NOT_NULL: Final = object()
#: wire column → (runs column, converter of non-null values, what null becomes or _NOT_NULL)
_COLUMNS: Final[dict[str, tuple[str, Callable[[Any], Any], Any]]] = {
    "friendlyId": ("id", _as_text, _NOT_NULL),
    "taskIdentifier": ("task_identifier", _as_text, _NOT_NULL),
    "status": ("status", _as_status, _NOT_NULL),
    "number": ("number", _as_int, None),
    "isTest": ("is_test", _as_flag, None),
    "usageDurationMs": ("duration_ms", _as_int, None),
    "costInCents": ("cost_in_cents", _as_float, None),
    "baseCostInCents": ("base_cost_in_cents", _as_float, None),
    "ttl": ("ttl", _as_text, None),
    "createdAt": ("created_at", _as_time, None),
    "updatedAt": ("updated_at", _as_time, None),
    "startedAt": ("started_at", _as_time, None),
    "completedAt": ("finished_at", _as_time, None),
    "queuedAt": ("queued_at", _as_time, None),
    "delayUntil": ("delayed_until", _as_time, None),
    "expiredAt": ("expired_at", _as_time, None),
    "runTags": ("tags", _as_list, "[]"),
    "realtimeStreams": ("realtime_streams", _as_list, "[]"),
    "error": ("error", _as_error, None),
}
#: Columns the server never skips; an insert without them cannot become a `runs` row.
_REQUIRED_ON_INSERT: Final = ("friendlyId", "taskIdentifier", "status")
#: (packet column, its type column on the wire, local type column, local ref column, where
#: its type is in a run's facts)
_PACKETS: Final = (
    ("payload", "payloadType", "payload_type", "payload_ref", 1),
    ("output", "outputType", "output_type", "output_ref", 2),
    ("metadata", "metadataType", "metadata_type", None, 3),
)
#: Runs whose friendly id and packet types the mapper remembers (about 300 bytes each).
_MAX_FACTS: Final = 20_000
#: A packet type not seen on the wire for a run (None is a type seen as NULL).
_UNSEEN: Final[Any] = object()
#: Packet types seen, each kept once: a run's facts share them rather than hold the
#: strings of the message they came in (a handful of types; a few dozen at most are kept).
_TYPES: dict[str, str] = {}
_MAX_TYPES: Final = 64


def _shared_type(kind: str | None) -> str | None:
    if kind is None:
        return None
    shared = _TYPES.get(kind)
    if shared is None:
        if len(_TYPES) >= _MAX_TYPES:
            return kind
        shared = _TYPES[kind] = kind
    return shared


Lookup = Callable[[str], Mapping[str, Any] | None]


def _bad(label: str, column: str, raw: Any, expected: str) -> MalformedResponseError:
    return MalformedResponseError(
        f"run {label}: column {column!r} must be {expected}, got {raw!r:.80}"
    )


class RunMapper:
    """Turns `TaskRun` change messages into `RowChange`s for `replica.tables.RUNS`.

    `packets` fetches `application/store` packets (without it, or when a fetch fails, the
    path is kept in `payload_ref`/`output_ref` and the packet column is NULL). Electric's
    partial updates may carry a packet without its type column: the type then comes from
    what this mapper saw on the wire for that run (a bounded memory), else from
    `lookup(internal_id)`, which returns the stored `runs` row (at least `id`,
    `payload_type`, `output_type`, `metadata_type`) or None.
    """

    def __init__(self, packets: PacketFetcher | None = None, lookup: Lookup | None = None) -> None:
        self._loader = PacketLoader(packets)
        self._lookup = lookup
        # internal id -> [friendly id or None, payload type, output type, metadata type]
        # (types as on the wire, or _UNSEEN), least recently used first. Compact: a large
        # snapshot fills it, and it is part of the peak memory.
        self._facts: dict[str, list[Any]] = {}

    async def map(self, changes: Sequence[ChangeMessage]) -> list[RowChange]:
        """Map one batch in order, its offloaded packets fetched concurrently (see
        `map_started`, which this awaits the downloads of; a batch that does not map
        cancels those it started)."""
        pending: list[asyncio.Task[None]] = []
        try:
            out = self.map_started(changes, pending)
        except BaseException:
            for task in pending:
                task.cancel()
            raise
        if pending:
            await asyncio.gather(*pending)
        return out

    def map_started(
        self, changes: Sequence[ChangeMessage], pending: list[asyncio.Task[None]]
    ) -> list[RowChange]:
        """Map one batch in order; the downloads of its offloaded packets are started and
        their tasks added to `pending`. The rows are complete once those are done (a failed
        download is logged and leaves the path in `payload_ref`/`output_ref`).

        Raises `MalformedResponseError` for a change without a string `id`, an insert without
        a never-skippable column, or a value of the wrong type for a typed column. Packet
        problems are logged with the run id and never raised.
        """
        return [self._change(change, pending) for change in changes]

    def _facts_of(self, key: str) -> list[Any]:
        known = self._facts
        facts = known.pop(key, None)
        if facts is None:
            facts = [None, _UNSEEN, _UNSEEN, _UNSEEN]
            if len(known) >= _MAX_FACTS:
                del known[next(iter(known))]
        known[key] = facts  # now the most recently used
        return facts

    def _stored(self, key: str) -> Mapping[str, Any]:
        return (self._lookup(key) if self._lookup else None) or {}

    def _change(self, change: ChangeMessage, pending: list[asyncio.Task[None]]) -> RowChange:
        value, op = change.value, change.operation
        key = value.get("id")
        if not isinstance(key, str) or not key:
            raise MalformedResponseError(
                f"a TaskRun {op} message ({change.key[:80]!r}) has no string 'id': {key!r:.40}"
            )
        if op == "delete":
            self._facts.pop(key, None)
            return RowChange("delete", key, {})
        facts = self._facts_of(key)
        if isinstance(value.get("friendlyId"), str):
            facts[0] = value["friendlyId"]
        label = facts[0] or f"with internal id {key}"
        values: dict[str, Any] = {}
        if op == "insert":
            values["internal_id"] = key
            for wire in _REQUIRED_ON_INSERT:
                if value.get(wire) is None:
                    raise _bad(label, wire, None, "present in an insert (it is never skipped)")
        for wire, raw in value.items():
            spec = _COLUMNS.get(wire)
            if spec is None:
                continue  # `id` is the key; anything else is not ours
            column, convert, null = spec
            if raw is None:
                if null is _NOT_NULL:
                    raise _bad(label, wire, raw, "a value (the column is NOT NULL)")
                values[column] = null
                continue
            try:
                values[column] = convert(raw)
            except _BadValue as exc:
                raise _bad(label, wire, raw, str(exc)) from None
        if "status" in value:
            values["db_status"] = value["status"]
        for packet in _PACKETS:
            self._packet(key, label, facts, value, values, packet, pending)
        return RowChange(op, key, values)  # type: ignore[arg-type]  # op checked by the protocol

    def _packet(
        self,
        key: str,
        label: str,
        facts: list[Any],
        value: Mapping[str, Any],
        values: dict[str, Any],
        packet: tuple[str, str, str, str | None, int],
        pending: list[asyncio.Task[None]],
    ) -> None:
        data_col, type_col, local_type, ref_col, known = packet
        if type_col in value:
            kind = value[type_col]
            if kind is not None and not isinstance(kind, str):
                raise _bad(label, type_col, kind, "a string")
            facts[known] = _shared_type(kind)
            if data_col not in value:
                # A lone application/store type is not stored: after a download the column
                # holds the download's content type, and the packet itself did not change.
                if kind != STORE_TYPE:
                    values[local_type] = kind
                return
            values[local_type] = kind
        elif data_col not in value:
            return
        else:
            kind = facts[known]
            if kind is _UNSEEN:
                kind = self._stored(key).get(local_type)
        data = value[data_col]
        if data is not None and not isinstance(data, str):
            raise _bad(label, data_col, data, "a string")
        if ref_col:
            values[ref_col] = None  # set again below while an offloaded packet is not fetched
        if not data or (kind is None and data_col == "metadata"):
            # As the SDK leaves them: no packet, and metadata whose type is unknown.
            values[data_col] = None
        elif kind != STORE_TYPE:
            values[data_col] = self._json(label, data_col, data, kind)
        elif ref_col is None:
            logger.warning("run %s: offloaded %s cannot be fetched: not stored", label, data_col)
            values[data_col] = None
        else:
            run_id = facts[0] or self._stored(key).get("id")
            self._loader.fill((values, data_col, label, run_id), data, pending)  # type: ignore[arg-type]

    def _json(self, label: str, which: str, data: str, kind: str | None) -> str | None:
        def problem(message: str) -> None:
            logger.warning("run %s, %s: %s", label, which, message)

        return packet_json(data, kind, on_problem=problem)
