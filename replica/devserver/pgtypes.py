"""Postgres column types as the emulator needs them: names, text forms, and parsing.

Values live on the wire (and in the emulator's tables) as the Postgres *text* form of the
value, the way Electric sends them: `"42"`, `"true"`, `"2026-08-20 09:14:03.512"`,
`"{a,\"b c\"}"`, jsonb text `{"a": 1}`. This module turns Python values into those strings and
back (the latter only for evaluating where-clauses).
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Aliases Postgres accepts for the types we model, mapped to the names Electric's schema
# header reports (`schema.ex` reports the udt name: int4, bool, float8, ...).
_ALIASES = {
    "int": "int4",
    "integer": "int4",
    "serial": "int4",
    "smallint": "int2",
    "bigint": "int8",
    "bigserial": "int8",
    "boolean": "bool",
    "real": "float4",
    "double precision": "float8",
    "float": "float8",
    "decimal": "numeric",
    "character varying": "varchar",
    "character": "bpchar",
    "char": "bpchar",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz",
    "time without time zone": "time",
    "time with time zone": "timetz",
}

#: How each type behaves when compared or computed on. Anything unknown (enums, citext...)
#: behaves as text, which is how Postgres compares an enum with a string literal here.
_KINDS = {
    "int2": "int",
    "int4": "int",
    "int8": "int",
    "float4": "float",
    "float8": "float",
    "numeric": "numeric",
    "bool": "bool",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
    "date": "date",
    "json": "json",
    "jsonb": "json",
}


_BUILTIN_TEXT = {"text", "varchar", "bpchar", "uuid", "bytea", "time", "timetz", "interval", "inet"}


@dataclass(frozen=True)
class PgType:
    """A column type: base type name (as in Electric's schema header) and array dimensions."""

    name: str
    dims: int = 0

    @functools.cached_property
    def kind(self) -> str:
        """Comparison family: int, float, numeric, bool, timestamp(tz), date, json or text."""
        return _KINDS.get(self.name, "text")

    @property
    def element(self) -> PgType:
        return PgType(self.name, 0)

    def __str__(self) -> str:
        return self.name + "[]" * self.dims


def parse_type(spec: str) -> PgType:
    """Parse a type as written in DDL (`text[]`, `timestamp(3)`, `integer`, `_int4`)."""
    s = spec.strip()
    dims = 0
    while s.endswith("[]"):
        dims += 1
        s = s[:-2].strip()
    if s.startswith("_") and dims == 0:
        dims, s = 1, s[1:]
    s = re.sub(r"\(\s*\d+(\s*,\s*\d+)?\s*\)", "", s).strip()
    s = " ".join(s.split())
    low = s.lower()
    if low in _ALIASES:
        return PgType(_ALIASES[low], dims)
    # Built-in names are case-insensitive; anything else (an enum) keeps its spelling.
    return PgType(low if low in _KINDS or low in _BUILTIN_TEXT else s, dims)


# -- Python value -> Postgres text form --------------------------------------------------


def format_timestamp(value: dt.datetime, *, tz: bool = False) -> str:
    """`YYYY-MM-DD HH:MM:SS[.fff]` with trailing fractional zeros trimmed, like Postgres."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    text = value.strftime("%Y-%m-%d %H:%M:%S")
    if value.microsecond:
        text += ("." + f"{value.microsecond:06d}").rstrip("0")
    return text + "+00" if tz else text


_TIMESTAMP = re.compile(
    r"^\s*(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6})\d*)?)?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?\s*$",
    re.IGNORECASE,
)


_CANONICAL_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d*[1-9])?(\+00)?$")


def parse_timestamp(text: str) -> dt.datetime:
    """Parse a timestamp literal (Postgres text form or ISO 8601, zone optional) as naive UTC."""
    m = _TIMESTAMP.match(text)
    if not m:
        raise ValueError(f"invalid input syntax for type timestamp: {text!r}")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    value = dt.datetime(
        int(year),
        int(month),
        int(day),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        int((frac or "0").ljust(6, "0")),
    )
    if zone and zone.upper() != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        delta = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        value -= sign * delta
    return value


def jsonb_text(value: Any) -> str:
    """A JSON value in Postgres jsonb output form: keys by (length, bytes), `": "`, `", "`."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        inner = ", ".join(
            f"{json.dumps(k, ensure_ascii=False)}: {jsonb_text(value[k])}" for k in keys
        )
        return "{" + inner + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(jsonb_text(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


_ARRAY_NEEDS_QUOTES = re.compile(r'[{},"\\\s]')


def _array_element(text: str) -> str:
    if text == "" or text.upper() == "NULL" or _ARRAY_NEEDS_QUOTES.search(text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def format_array(values: Sequence[Any], element: PgType) -> str:
    """A Postgres array literal, quoting elements only when needed (`{a,"b c",NULL}`)."""
    parts = []
    for v in values:
        if v is None:
            parts.append("NULL")
        elif isinstance(v, (list, tuple)):
            parts.append(format_array(v, element))
        else:
            text = encode_value(v, element)
            assert text is not None
            if element.name == "bool":
                text = "t" if text == "true" else "f"
            parts.append(_array_element(text))
    return "{" + ",".join(parts) + "}"


def encode_value(value: Any, pg_type: PgType) -> str | None:
    """A Python value as the text form the emulator stores and sends (strings pass as is)."""
    if value is None:
        return None
    if pg_type.dims:
        if isinstance(value, str):
            return value
        return format_array(list(value), pg_type.element)
    kind = pg_type.kind
    if isinstance(value, str):
        if kind == "bool":
            return "true" if value.lower() in ("t", "true", "1", "yes", "on") else "false"
        if kind in ("timestamp", "timestamptz") and not _CANONICAL_TIMESTAMP.match(value):
            # ISO strings with a T or a zone are stored (and sent) in Postgres' form.
            return format_timestamp(parse_timestamp(value), tz=kind == "timestamptz")
        return value
    if kind == "bool":
        return "true" if value else "false"
    if kind == "json":
        return jsonb_text(value) if pg_type.name == "jsonb" else json.dumps(value)
    if isinstance(value, dt.datetime):
        return format_timestamp(value, tz=pg_type.name == "timestamptz")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        if kind == "int":
            return str(int(value))
        text = repr(value)  # float8 output: shortest round-trip form, no trailing ".0"
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- Postgres text form -> Python value (for where-clause evaluation) --------------------


def parse_array(text: str) -> list[Any]:
    """Parse a Postgres array literal into nested lists of strings (None for bare NULL)."""
    pos = 0

    def parse_level() -> list[Any]:
        nonlocal pos
        assert text[pos] == "{"
        pos += 1
        items: list[Any] = []
        if text[pos] == "}":
            pos += 1
            return items
        while True:
            ch = text[pos]
            if ch == "{":
                items.append(parse_level())
            elif ch == '"':
                pos += 1
                buf = []
                while text[pos] != '"':
                    if text[pos] == "\\":
                        pos += 1
                    buf.append(text[pos])
                    pos += 1
                pos += 1
                items.append("".join(buf))
            else:
                start = pos
                while text[pos] not in ",}":
                    pos += 1
                raw = text[start:pos].strip()
                items.append(None if raw.upper() == "NULL" else raw)
            if text[pos] == ",":
                pos += 1
                continue
            if text[pos] == "}":
                pos += 1
                return items

    if text.startswith("["):  # explicit bounds, e.g. '[0:1]={a,b}'
        text = text[text.index("=") + 1 :]
    return parse_level()


def decode_value(text: str | None, pg_type: PgType) -> Any:
    """The Python value of a text form, for comparisons (raises ValueError when invalid)."""
    if text is None:
        return None
    if pg_type.dims:
        element = pg_type.element

        def convert(items: list[Any]) -> list[Any]:
            return [convert(i) if isinstance(i, list) else decode_value(i, element) for i in items]

        return convert(parse_array(text))
    kind = pg_type.kind
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "numeric":
        return decimal.Decimal(text)
    if kind == "bool":
        low = text.strip().lower()
        if low in ("t", "true", "yes", "on", "1", "y"):
            return True
        if low in ("f", "false", "no", "off", "0", "n"):
            return False
        raise ValueError(f"invalid input syntax for type boolean: {text!r}")
    if kind in ("timestamp", "timestamptz"):
        return parse_timestamp(text)
    if kind == "date":
        return dt.date.fromisoformat(text.strip())
    if kind == "json":
        return json.loads(text)
    return text
