"""The native realtime backend's wire format (webapp `electricStreamProtocol.server.ts`).

The native backend serializes the Prisma values of a run itself instead of passing on
Postgres' text forms, so its values differ from Electric's: timestamps are ISO strings
without the `Z`, bools `t`/`f`, numbers as JavaScript's `String()` prints them, jsonb as
compact `JSON.stringify`, arrays with every element quoted, an empty `runTags` is null
(the column has no default) and an empty `realtimeStreams` is `{}`. The `electric-schema`
header carries only `type` (+ `dims`). Offsets are `<updatedAtMs>_<seq>`.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal

import orjson

from replica.devserver.pgtypes import parse_array, parse_timestamp
from replica.devserver.tables import Row

Operation = Literal["insert", "update"]

_TIMESTAMPS: Final = frozenset(
    {"createdAt", "updatedAt", "startedAt", "delayUntil", "queuedAt", "expiredAt", "completedAt"}
)
_TYPES: Final = {
    **dict.fromkeys(_TIMESTAMPS, "timestamp"),
    "number": "int4",
    "usageDurationMs": "int4",
    "isTest": "bool",
    "costInCents": "float8",
    "baseCostInCents": "float8",
    "error": "jsonb",
}
_ARRAYS: Final = frozenset({"runTags", "realtimeStreams"})
#: Array columns without a SQL default: Postgres holds NULL for them, Prisma hands over [].
_EMPTY_ARRAY_IS_NULL: Final = frozenset({"runTags"})
_EPOCH = dt.datetime(1970, 1, 1)

UP_TO_DATE: Final = {"headers": {"control": "up-to-date"}}


def js_number(value: float) -> str:
    """`String(value)` in JavaScript: `0.00008`, not Python's `8e-05`; `3`, not `3.0`."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    sign, digit_tuple, exponent = decimal.Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    point = exponent + len(digits)  # the decimal point sits after this many digits
    if len(digits) <= point <= 21:
        text = digits + "0" * (point - len(digits))
    elif 0 < point <= 21:
        text = digits[:point] + "." + digits[point:]
    elif -6 < point <= 0:
        text = "0." + "0" * -point + digits
    else:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        text = f"{mantissa}e{'+' if point > 0 else '-'}{abs(point - 1)}"
    return "-" + text if sign else text


def js_json(value: Any) -> str:
    """`JSON.stringify(value)`: compact, keys in their order, numbers as JavaScript prints them."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{js_json(str(k))}:{js_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(js_json(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return js_number(value) if math.isfinite(value) else "null"
    if isinstance(value, int):
        return js_number(float(value)) if abs(value) >= 2**53 else str(value)
    return json.dumps(value, ensure_ascii=False)


def millis(timestamp: str) -> int:
    """A stored timestamp as milliseconds since the epoch (JavaScript's `getTime()`)."""
    return (parse_timestamp(timestamp) - _EPOCH) // dt.timedelta(milliseconds=1)


def _iso(timestamp: str) -> str:
    value = parse_timestamp(timestamp)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}"


def _array(name: str, text: str) -> str | None:
    elements = parse_array(text)
    if not elements:
        return None if name in _EMPTY_ARRAY_IS_NULL else "{}"
    quoted = (
        '"' + ("null" if e is None else str(e)).replace("\\", "\\\\").replace('"', '\\"') + '"'
        for e in elements
    )
    return "{" + ",".join(quoted) + "}"


def wire_value(name: str, text: str | None) -> str | None:
    """The native backend's string for column `name` whose stored text form is `text`."""
    if text is None:
        return None
    if name in _ARRAYS:
        return _array(name, text)
    kind = _TYPES.get(name, "text")
    if kind == "timestamp":
        return _iso(text)
    if kind == "bool":
        return "t" if text.lower() in ("t", "true") else "f"
    if kind in ("int4", "float8"):
        return js_number(float(text))
    if kind == "jsonb":
        return js_json(json.loads(text))
    return text


def schema_header(columns: Sequence[str]) -> str:
    """`electric-schema` as `buildElectricSchemaHeader` writes it: only `type` and `dims`."""
    schema: dict[str, dict[str, Any]] = {}
    for name in columns:
        info: dict[str, Any] = {"type": _TYPES.get(name, "text")}
        if name in _ARRAYS:
            info["dims"] = 1
        schema[name] = info
    return orjson.dumps(schema).decode()


def change(row: Row, columns: Sequence[str], operation: Operation) -> dict[str, Any]:
    return {
        "key": f'"public"."TaskRun"/"{row["id"]}"',
        "value": {c: wire_value(c, row.get(c)) for c in columns},
        "headers": {"operation": operation},
    }


def body(changes: Iterable[dict[str, Any]]) -> bytes:
    """Change messages then `up-to-date`: every native response ends that way."""
    return orjson.dumps([*changes, UP_TO_DATE])


def encode_offset(updated_at_ms: int, seq: int) -> str:
    return f"{updated_at_ms}_{seq}"


def offset_millis(offset: str | None) -> int:
    """The `updatedAt` (ms) an echoed offset carries; 0 for `-1` or anything unreadable."""
    first = (offset or "").split("_")[0]
    try:
        value = float(first)
    except ValueError:
        return 0
    return int(value) if math.isfinite(value) and value > 0 else 0
