"""Typed column values: Electric sends every value as JSON null or a string holding the Postgres
text form; this module turns those strings into Python values, driven by `electric-schema`."""

from __future__ import annotations

import binascii
import datetime as dt
import json
import logging
import math
import re
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any, TypeAlias

import orjson

from replica.errors import MalformedResponseError, ValueParseError
from replica.protocol.pg_array import MAX_DIMS, parse_pg_array

__all__ = [
    "DEFAULT_PARSERS",
    "RICH_PARSERS",
    "ColumnInfo",
    "Parser",
    "RowParser",
    "Schema",
    "keep_text",
    "parse_pg_array",
    "parse_schema_header",
]

logger = logging.getLogger(__name__)

#: One `electric-schema` entry: {"type": "int4", "dims": 1, "not_null": True, "pk_index": 0}.
ColumnInfo: TypeAlias = Mapping[str, Any]
#: Column name -> ColumnInfo.
Schema: TypeAlias = Mapping[str, ColumnInfo]
#: Converts one column's raw text, given that column's schema entry.
Parser: TypeAlias = Callable[[str, ColumnInfo], Any]


# -- the schema header --------------------------------------------------------------------


def parse_schema_header(text: str) -> dict[str, dict[str, Any]]:
    """Parse and check an `electric-schema` header: column name -> {"type": ..., ...}.

    Each entry needs a string `type`; `dims`, if present, must be a non-negative integer.
    Other keys (`not_null`, `pk_index`, `precision`, ...) are kept as they are.
    Raises `MalformedResponseError` for anything else.
    """
    try:
        schema = orjson.loads(text)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise _bad_schema(f"it is not valid JSON ({exc})") from exc
    if not isinstance(schema, dict):
        raise _bad_schema(f"it is {_json_kind(schema)}, not an object")
    for column, info in schema.items():
        problem = _column_problem(info)
        if problem:
            raise _bad_schema(f"column {column!r} {problem}")
    return schema


def _column_problem(info: Any) -> str | None:
    if not isinstance(info, Mapping):
        return f"is described by {_json_kind(info)}, not an object"
    pg_type = info.get("type")
    if not isinstance(pg_type, str) or not pg_type:
        return 'has no "type" string'
    dims = info.get("dims", 0)
    # bool is an int subclass; `"dims": true` is still junk.
    if type(dims) is not int or dims < 0:
        return f'has "dims" {dims!r}, not a non-negative integer'
    return None


def _bad_schema(detail: str) -> MalformedResponseError:
    return MalformedResponseError(f"the electric-schema header cannot be used: {detail}")


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    return kinds.get(type(value), f"a {type(value).__name__}")


# -- scalar parsers (the defaults) --------------------------------------------------------
# Each takes the column info as an optional second argument so that it fits `Parser` and can
# also serve, unbound, as an array element parser.


def keep_text(text: str, info: ColumnInfo | None = None) -> str:
    """The identity parser: map a type to it to keep its values as strings (no cost per row)."""
    return text


def _parse_int(text: str, info: ColumnInfo | None = None) -> int:
    # int() alone would accept " 1", "4_2", "+1" and non-ASCII digits; Postgres never sends them.
    if text.isascii() and (text.isdigit() or (text[:1] == "-" and text[1:].isdigit())):
        return int(text)
    raise ValueError("not an integer (expected ASCII digits with an optional leading '-')")


# Plain decimals and exponents, as Postgres prints float and numeric values. No nested
# quantifiers, so matching stays linear.
_DECIMAL_RE = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_FLOAT_SPECIALS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_NUMERIC_SPECIALS = {
    "NaN": Decimal("NaN"),
    "Infinity": Decimal("Infinity"),
    "-Infinity": Decimal("-Infinity"),
}


def _parse_float(text: str, info: ColumnInfo | None = None) -> float:
    if _DECIMAL_RE.fullmatch(text):
        return float(text)
    special = _FLOAT_SPECIALS.get(text)
    if special is None:
        raise ValueError("not a number (expected a decimal, NaN, Infinity or -Infinity)")
    return special


def _parse_numeric(text: str, info: ColumnInfo | None = None) -> Decimal:
    if _DECIMAL_RE.fullmatch(text):
        return Decimal(text)
    special = _NUMERIC_SPECIALS.get(text)
    if special is None:
        raise ValueError("not a number (expected a decimal, NaN, Infinity or -Infinity)")
    return special


# Replication sends "t"/"f", snapshots send bool::text, "true"/"false".
_BOOLS = {"t": True, "true": True, "f": False, "false": False}


def _parse_bool(text: str, info: ColumnInfo | None = None) -> bool:
    flag = _BOOLS.get(text)
    if flag is None:
        raise ValueError("not a boolean (expected t, f, true or false)")
    return flag


# orjson turns integers beyond 64 bits into floats without complaint, so documents holding a
# run of 19+ digits (maybe such an integer) go to the exact stdlib decoder instead.
# Finding such a run with a regex costs ~50 ns per character (the engine restarts at every
# digit); mapping every byte to digit / not-digit in C and searching for 19 zeros is ~8x
# cheaper, and this check runs on every JSON packet.
_DIGIT_BYTES = bytes(0 if 48 <= i <= 57 else 1 for i in range(256))
_NINETEEN_DIGITS = b"\x00" * 19


def has_long_digit_run(text: str) -> bool:
    """True if `text` holds 19 or more consecutive ASCII digits (a possible big integer)."""
    if len(text) < 19:
        return False
    return _NINETEEN_DIGITS in text.encode("utf-8", "surrogatepass").translate(_DIGIT_BYTES)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_STDLIB_JSON = json.JSONDecoder(parse_constant=_reject_constant)


def _parse_json(text: str, info: ColumnInfo | None = None) -> Any:
    if not has_long_digit_run(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # the stdlib accepts some valid JSON orjson refuses (1e400, lone surrogates)
    try:
        return _STDLIB_JSON.decode(text)
    except RecursionError:
        raise ValueError("the JSON document is nested too deeply") from None


DEFAULT_PARSERS: Mapping[str, Parser] = MappingProxyType(
    {
        "int2": _parse_int,
        "int4": _parse_int,
        "int8": _parse_int,
        "float4": _parse_float,
        "float8": _parse_float,
        "numeric": _parse_numeric,
        "bool": _parse_bool,
        "json": _parse_json,
        "jsonb": _parse_json,
    }
)


# -- rich parsers (opt-in): dates, times, bytes, UUIDs ------------------------------------
# Written by hand: Python 3.10's fromisoformat rejects "+00" and 1-5 fractional digits.

_DATE = r"([0-9]{4,})-([0-9]{2})-([0-9]{2})"
_TIME = r"([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?"
_OFFSET = r"(Z|[+-][0-9]{2}(?::?[0-9]{2}){0,2})"
_DATE_RE = re.compile(_DATE + "( BC)?")
_TIMESTAMP_RE = re.compile(f"{_DATE}[ T]{_TIME}( BC)?")
_TIMESTAMPTZ_RE = re.compile(f"{_DATE}[ T]{_TIME}{_OFFSET}( BC)?")
_TIME_RE = re.compile(_TIME)
_TIMETZ_RE = re.compile(_TIME + _OFFSET)
_INFINITIES = frozenset({"infinity", "-infinity"})
_ZONES: dict[str, dt.tzinfo] = {"+00": dt.timezone.utc, "Z": dt.timezone.utc}


def _micros(fraction: str | None) -> int:
    return int(fraction.ljust(6, "0")) if fraction else 0


def _zone(offset: str) -> dt.tzinfo:
    zone = _ZONES.get(offset)
    if zone is None:
        digits = offset[1:].replace(":", "")
        hours, minutes, seconds = int(digits[:2]), int(digits[2:4] or 0), int(digits[4:] or 0)
        if minutes > 59 or seconds > 59:
            raise ValueError(f"UTC offset {offset!r} is out of range")
        delta = dt.timedelta(hours=hours, minutes=minutes, seconds=seconds)
        zone = dt.timezone(-delta if offset[0] == "-" else delta)
        if len(_ZONES) < 512:  # a handful in practice; the cap keeps junk from growing it
            _ZONES[offset] = zone
    return zone


def _out_of_range(year: str, bc: str | None) -> bool:
    # BC dates and years past 9999 are valid Postgres values that datetime cannot hold.
    return bool(bc) or len(year) > 4


def _parse_timestamp(text: str, info: ColumnInfo | None = None) -> dt.datetime | str:
    match = _TIMESTAMP_RE.fullmatch(text)
    if match is None:
        if text in _INFINITIES:
            return text
        raise ValueError("not a timestamp (expected YYYY-MM-DD HH:MM:SS[.ffffff])")
    year, month, day, hour, minute, second, fraction, bc = match.groups()
    if _out_of_range(year, bc):
        return text
    return dt.datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), _micros(fraction)
    )


def _parse_timestamptz(text: str, info: ColumnInfo | None = None) -> dt.datetime | str:
    match = _TIMESTAMPTZ_RE.fullmatch(text)
    if match is None:
        if text in _INFINITIES:
            return text
        raise ValueError("not a timestamptz (expected YYYY-MM-DD HH:MM:SS[.ffffff]+HH[:MM])")
    year, month, day, hour, minute, second, fraction, offset, bc = match.groups()
    if _out_of_range(year, bc):
        return text
    return dt.datetime(
        int(year),
        int(month),
        int(day),
        int(hour),
        int(minute),
        int(second),
        _micros(fraction),
        tzinfo=_zone(offset),
    )


def _parse_date(text: str, info: ColumnInfo | None = None) -> dt.date | str:
    match = _DATE_RE.fullmatch(text)
    if match is None:
        if text in _INFINITIES:
            return text
        raise ValueError("not a date (expected YYYY-MM-DD)")
    year, month, day, bc = match.groups()
    if _out_of_range(year, bc):
        return text
    return dt.date(int(year), int(month), int(day))


def _end_of_day(hour: str, minute: str, second: str, fraction: str | None) -> bool:
    # Postgres allows time '24:00:00'; datetime.time stops at 23:59:59.999999.
    return hour == "24" and minute == second == "00" and not (fraction or "").strip("0")


def _parse_time(text: str, info: ColumnInfo | None = None) -> dt.time | str:
    match = _TIME_RE.fullmatch(text)
    if match is None:
        raise ValueError("not a time (expected HH:MM:SS[.ffffff])")
    hour, minute, second, fraction = match.groups()
    if _end_of_day(hour, minute, second, fraction):
        return text
    return dt.time(int(hour), int(minute), int(second), _micros(fraction))


def _parse_timetz(text: str, info: ColumnInfo | None = None) -> dt.time | str:
    match = _TIMETZ_RE.fullmatch(text)
    if match is None:
        raise ValueError("not a timetz (expected HH:MM:SS[.ffffff]+HH[:MM])")
    hour, minute, second, fraction, offset = match.groups()
    if _end_of_day(hour, minute, second, fraction):
        return text
    return dt.time(int(hour), int(minute), int(second), _micros(fraction), tzinfo=_zone(offset))


def _parse_bytea(text: str, info: ColumnInfo | None = None) -> bytes:
    # Electric forces bytea_output='hex'; a2b_hex (unlike bytes.fromhex) rejects whitespace.
    if not text.startswith("\\x"):
        raise ValueError("not a bytea in hex format (expected \\x followed by hex digits)")
    return binascii.a2b_hex(text[2:])


def _parse_uuid(text: str, info: ColumnInfo | None = None) -> uuid.UUID:
    if len(text) != 36 or not text.isascii():
        raise ValueError("not a UUID (expected 8-4-4-4-12 hex digits)")
    return uuid.UUID(text)


RICH_PARSERS: Mapping[str, Parser] = MappingProxyType(
    {
        **DEFAULT_PARSERS,
        "timestamp": _parse_timestamp,
        "timestamptz": _parse_timestamptz,
        "date": _parse_date,
        "time": _parse_time,
        "timetz": _parse_timetz,
        "bytea": _parse_bytea,
        "uuid": _parse_uuid,
    }
)

# Parsers that ignore their column info, so they can parse array elements unbound.
_STANDALONE = frozenset(RICH_PARSERS.values())


# -- rows -----------------------------------------------------------------------------------


class _ArrayColumn:
    """Converter of one array column: a literal, then its element type's parser."""

    __slots__ = ("delimiter", "element")

    def __init__(self, element: Callable[[str], Any] | None, delimiter: str) -> None:
        self.element = element
        self.delimiter = delimiter

    def __call__(self, text: str, info: ColumnInfo) -> list[Any]:
        return parse_pg_array(text, self.element, delimiter=self.delimiter)


def _bind(parser: Parser, info: ColumnInfo) -> Callable[[str], Any]:
    if parser in _STANDALONE:
        return parser  # type: ignore[return-value]  # ours take `info` as optional
    return lambda text: parser(text, info)


class RowParser:
    """Converts the column values of change messages for one shape, per its schema.

    `parsers` are merged over `DEFAULT_PARSERS` (pass `RICH_PARSERS` for dates, bytes and
    UUIDs; map a type to `keep_text` to leave it as text). Call it with a message's `value` or
    `old_value`: it converts that dict in place and returns it. Columns the schema does not
    list stay raw strings. A bad value raises `ValueParseError` naming the column; so does a
    null in a NOT NULL column, unless `strict_not_null` is false, in which case the null is kept
    and a warning logged (once per column).
    """

    __slots__ = ("_converters", "_not_null", "_strict_not_null", "_types", "_warned")

    def __init__(
        self,
        schema: Schema,
        parsers: Mapping[str, Parser] | None = None,
        *,
        strict_not_null: bool = True,
    ) -> None:
        table = {**DEFAULT_PARSERS, **parsers} if parsers else DEFAULT_PARSERS
        self._converters: dict[str, tuple[Parser, ColumnInfo]] = {}
        self._types: dict[str, str] = {}
        not_null = set()
        for column, info in schema.items():
            problem = _column_problem(info)
            if problem:
                raise _bad_schema(f"column {column!r} {problem}")
            pg_type = info["type"]
            dims = info.get("dims", 0)
            # For messages only; a junk `dims` must not build a huge string.
            self._types[column] = pg_type + ("[]" * dims if dims <= MAX_DIMS else f"[{dims}]")
            if info.get("not_null") is True:
                not_null.add(column)
            parser = table.get(pg_type, keep_text)
            if dims:
                element = None if parser is keep_text else _bind(parser, info)
                array = _ArrayColumn(element, ";" if pg_type == "box" else ",")
                self._converters[column] = (array, info)
            elif parser is not keep_text:
                self._converters[column] = (parser, info)
        self._not_null = frozenset(not_null)
        self._strict_not_null = strict_not_null
        self._warned: set[str] = set()

    def __call__(self, value: dict[str, Any]) -> dict[str, Any]:
        """Convert one `value`/`old_value` dict in place and return it."""
        if not isinstance(value, dict):
            raise MalformedResponseError(
                f"a change message's value is {_json_kind(value)}, not an object of columns"
            )
        converters = self._converters
        for column, raw in value.items():
            if isinstance(raw, str):
                converter = converters.get(column)
                if converter is not None:
                    try:
                        # Assigning to an existing key is safe while iterating.
                        value[column] = converter[0](raw, converter[1])
                    except Exception as exc:
                        # Custom parsers may raise anything; all of it means "bad value".
                        reason = str(exc) or type(exc).__name__
                        raise ValueParseError(column, self._types[column], raw, reason) from exc
            elif raw is None:
                if column in self._not_null:
                    self._null_in_not_null(column)
            else:
                raise ValueParseError(
                    column,
                    self._types.get(column, "not in the schema"),
                    raw,
                    f"Electric sends every value as a string or null, not {_json_kind(raw)}",
                )
        return value

    def _null_in_not_null(self, column: str) -> None:
        pg_type = self._types[column]
        if self._strict_not_null:
            raise ValueParseError(column, pg_type, None, "null in a NOT NULL column")
        if column not in self._warned:
            self._warned.add(column)
            logger.warning(
                "column %r (%s) is NOT NULL in the shape's schema but has a null value; "
                "keeping the null (later ones in this column are not reported)",
                column,
                pg_type,
            )
