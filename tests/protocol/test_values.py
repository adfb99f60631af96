"""Value parsing: Electric's wire text (Postgres text form) -> Python values, per schema."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import re
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replica.errors import MalformedResponseError, ReplicaError, ValueParseError
from replica.protocol import values
from replica.protocol.values import (
    DEFAULT_PARSERS,
    RICH_PARSERS,
    RowParser,
    has_long_digit_run,
    keep_text,
    parse_pg_array,
    parse_schema_header,
)

UTC = dt.timezone.utc


def parse(pg_type: str, raw: Any, parsers: Any = None, **info: Any) -> Any:
    """Parse one value of a one-column schema."""
    return RowParser({"c": {"type": pg_type, **info}}, parsers)({"c": raw})["c"]


def parse_error(pg_type: str, raw: Any, parsers: Any = None, **info: Any) -> ValueParseError:
    with pytest.raises(ValueParseError) as caught:
        parse(pg_type, raw, parsers, **info)
    return caught.value


# -- electric-schema header ---------------------------------------------------------------

TRIGGER_SCHEMA = (
    '{"id":{"type":"text"},"createdAt":{"type":"timestamp"},"number":{"type":"int4"},'
    '"isTest":{"type":"bool"},"costInCents":{"type":"float8"},'
    '"runTags":{"type":"text","dims":1},"error":{"type":"jsonb"},'
    '"realtimeStreams":{"type":"text","dims":1}}'
)


def test_schema_header_parses_and_keeps_extra_keys() -> None:
    schema = parse_schema_header(
        '{"id":{"type":"int8","pk_index":0,"not_null":true},'
        '"n":{"type":"numeric","precision":10,"scale":2,"future":[1]},'
        '"tags":{"type":"text","dims":1}}'
    )
    assert schema == {
        "id": {"type": "int8", "pk_index": 0, "not_null": True},
        "n": {"type": "numeric", "precision": 10, "scale": 2, "future": [1]},
        "tags": {"type": "text", "dims": 1},
    }
    assert parse_schema_header("{}") == {}
    assert parse_schema_header(TRIGGER_SCHEMA)["runTags"] == {"type": "text", "dims": 1}


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("", "not valid JSON"),
        ('{"a":', "not valid JSON"),
        ("[]", "is an array, not an object"),
        ("null", "is null, not an object"),
        ('"x"', "is a string, not an object"),
        ('{"a": 1}', "column 'a' is described by a number, not an object"),
        ('{"a": ["int4"]}', "column 'a' is described by an array"),
        ('{"a": {}}', "column 'a' has no \"type\" string"),
        ('{"a": {"type": 4}}', 'has no "type" string'),
        ('{"a": {"type": ""}}', 'has no "type" string'),
        ('{"a": {"type": null}}', 'has no "type" string'),
        ('{"a": {"type": "int4", "dims": -1}}', '"dims" -1, not a non-negative integer'),
        ('{"a": {"type": "int4", "dims": 1.0}}', "not a non-negative integer"),
        ('{"a": {"type": "int4", "dims": "1"}}', "not a non-negative integer"),
        ('{"a": {"type": "int4", "dims": true}}', "not a non-negative integer"),
        ('{"a": {"type": "int4", "dims": null}}', "not a non-negative integer"),
    ],
)
def test_schema_header_rejects_junk(header: str, message: str) -> None:
    with pytest.raises(MalformedResponseError, match="electric-schema") as caught:
        parse_schema_header(header)
    assert message in str(caught.value)


def test_row_parser_rejects_a_bad_schema() -> None:
    with pytest.raises(MalformedResponseError, match="column 'x'"):
        RowParser({"x": {"dims": 1}})


def test_absurd_dims_are_named_compactly() -> None:
    error = parse_error("bool", "x", dims=10**12)
    assert error.pg_type == f"bool[{10**12}]"


# -- default scalar parsers (§3.2 table, §7, conformance case 21) -------------------------


@pytest.mark.parametrize("pg_type", ["int2", "int4", "int8"])
@pytest.mark.parametrize(
    ("raw", "expected"),
    [("42", 42), ("-7", -7), ("0", 0), ("-0", 0), ("007", 7)],
)
def test_ints(pg_type: str, raw: str, expected: int) -> None:
    assert parse(pg_type, raw) == expected


def test_int8_is_exact_beyond_float_precision() -> None:
    assert parse("int8", "9007199254740993") == 9007199254740993
    assert parse("int8", "9223372036854775807") == 2**63 - 1
    assert parse("int8", "-9223372036854775808") == -(2**63)
    assert parse("int8", "123456789012345678901234567890") == 123456789012345678901234567890


@pytest.mark.parametrize(
    "raw", ["4_2", " 1", "1 ", "1.0", "", "-", "+1", "--1", "1e3", "0x10", "١٢", "NaN", "1-"]
)
def test_ints_reject_junk(raw: str) -> None:
    error = parse_error("int8", raw)
    assert (error.column, error.pg_type, error.value) == ("c", "int8", raw)
    assert "not an integer" in str(error)
    assert isinstance(error.__cause__, ValueError)


@pytest.mark.parametrize("pg_type", ["float4", "float8"])
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1.5", 1.5),
        ("0", 0.0),
        ("-0", -0.0),
        ("0.38571", 0.38571),
        ("1e+20", 1e20),
        ("-1.5e-05", -1.5e-05),
        ("1E5", 1e5),
        (".5", 0.5),
        ("Infinity", math.inf),
        ("-Infinity", -math.inf),
    ],
)
def test_floats(pg_type: str, raw: str, expected: float) -> None:
    value = parse(pg_type, raw)
    assert type(value) is float
    assert value == expected


def test_float_nan() -> None:
    assert math.isnan(parse("float8", "NaN"))
    assert math.isnan(parse("float4", "NaN"))


@pytest.mark.parametrize(
    "raw", ["nan", "inf", "infinity", "+Infinity", "1_0", " 1", "1 ", "", "abc", "1e", "-", "٣"]
)
def test_floats_reject_junk(raw: str) -> None:
    assert "not a number" in str(parse_error("float8", raw))


@pytest.mark.parametrize(
    "raw", ["123.4500", "0", "-0.001", "1e-7", "98765432109876543210.0123456789", "NaN"]
)
def test_numeric_is_exact(raw: str) -> None:
    value = parse("numeric", raw)
    assert isinstance(value, Decimal)
    assert str(value) == str(Decimal(raw))
    assert str(parse("numeric", "123.4500")) == "123.4500"


def test_numeric_infinities() -> None:
    assert parse("numeric", "Infinity") == Decimal("Infinity")
    assert parse("numeric", "-Infinity") == Decimal("-Infinity")


@pytest.mark.parametrize("raw", ["1,5", "sNaN", "inf", "", " 1", "1_000", "٣", "Infinity!"])
def test_numeric_rejects_junk(raw: str) -> None:
    parse_error("numeric", raw)


@pytest.mark.parametrize(
    ("raw", "expected"), [("t", True), ("true", True), ("f", False), ("false", False)]
)
def test_bool_accepts_replication_and_snapshot_spellings(raw: str, expected: bool) -> None:
    assert parse("bool", raw) is expected


@pytest.mark.parametrize("raw", ["T", "TRUE", "yes", "1", "0", "", " t", "on"])
def test_bool_rejects_junk(raw: str) -> None:
    assert "not a boolean" in str(parse_error("bool", raw))


@pytest.mark.parametrize("pg_type", ["json", "jsonb"])
def test_json(pg_type: str) -> None:
    assert parse(pg_type, '{"a":1}') == {"a": 1}
    assert parse(pg_type, '{"name": "Error", "message": "boom"}') == {
        "name": "Error",
        "message": "boom",
    }
    assert parse(pg_type, '"a string"') == "a string"
    assert parse(pg_type, "[1, 2.5, null, true]") == [1, 2.5, None, True]
    assert parse(pg_type, "null") is None


def test_json_big_ints_survive_exactly() -> None:
    # orjson would silently turn these into floats.
    assert parse("jsonb", '{"n": 18446744073709551616}') == {"n": 2**64}
    assert parse("jsonb", "-9223372036854775809") == -(2**63) - 1
    assert parse("jsonb", "[123456789012345678901234567890]") == [123456789012345678901234567890]


def test_json_that_orjson_refuses_falls_back_to_the_stdlib() -> None:
    assert parse("json", '"\\ud800"') == "\ud800"  # a lone surrogate: json (not jsonb) keeps it
    assert parse("jsonb", "[1e400]") == [math.inf]


@pytest.mark.parametrize("raw", ["", "{", "{'a': 1}", "NaN", "[Infinity]", "1 2", "tru"])
def test_json_rejects_junk(raw: str) -> None:
    parse_error("jsonb", raw)


def test_json_nested_too_deeply_is_a_parse_error() -> None:
    parse_error("jsonb", "[" * 200_000 + "]" * 200_000)


@pytest.mark.parametrize(
    ("pg_type", "raw"),
    [
        ("text", "hello"),
        ("text", ""),
        ("varchar", "x y"),
        ("bpchar", "ab   "),  # padding kept
        ("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        ("TaskRunStatus", "PENDING"),  # enum
        ("timestamp", "2024-08-25 10:49:47.055251"),
        ("timestamptz", "2025-06-24 04:41:55.296+00"),
        ("date", "2024-01-31"),
        ("time", "12:00:00"),
        ("timetz", "12:00:00+00"),
        ("interval", "P1Y2M3DT4H5M6S"),
        ("bytea", "\\x0a0b"),
        ("inet", "192.168.0.1/32"),
        ("cidr", "10.0.0.0/8"),
        ("money", "$1,000.00"),
        ("box", "(1,1),(0,0)"),
    ],
)
def test_other_types_stay_strings_by_default(pg_type: str, raw: str) -> None:
    assert parse(pg_type, raw) == raw


def test_defaults_are_read_only() -> None:
    with pytest.raises(TypeError):
        DEFAULT_PARSERS["int4"] = keep_text  # type: ignore[index]
    assert set(DEFAULT_PARSERS) < set(RICH_PARSERS)


# -- rich parsers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-08-25 10:49:47.055251", dt.datetime(2024, 8, 25, 10, 49, 47, 55251)),
        ("2026-08-20 09:14:03.512", dt.datetime(2026, 8, 20, 9, 14, 3, 512000)),
        ("2026-08-20 09:15:10.02", dt.datetime(2026, 8, 20, 9, 15, 10, 20000)),
        ("2026-08-20 09:15:10.5", dt.datetime(2026, 8, 20, 9, 15, 10, 500000)),
        ("2026-08-20 09:15:10", dt.datetime(2026, 8, 20, 9, 15, 10)),
        ("2026-08-20T09:15:10", dt.datetime(2026, 8, 20, 9, 15, 10)),
        ("0001-01-01 00:00:00", dt.datetime(1, 1, 1)),
        ("9999-12-31 23:59:59.999999", dt.datetime(9999, 12, 31, 23, 59, 59, 999999)),
    ],
)
def test_rich_timestamp(raw: str, expected: dt.datetime) -> None:
    value = parse("timestamp", raw, RICH_PARSERS)
    assert value == expected
    assert value.tzinfo is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2025-06-24 04:41:55.296+00", dt.datetime(2025, 6, 24, 4, 41, 55, 296000, UTC)),
        (
            "2025-06-24 10:11:55+05:30",
            dt.datetime(2025, 6, 24, 10, 11, 55, tzinfo=dt.timezone(dt.timedelta(hours=5.5))),
        ),
        (
            "2025-06-24 01:41:55.1-03",
            dt.datetime(2025, 6, 24, 1, 41, 55, 100000, dt.timezone(dt.timedelta(hours=-3))),
        ),
        (
            "1850-01-01 00:00:00+00:53:28",
            dt.datetime(1850, 1, 1, tzinfo=dt.timezone(dt.timedelta(minutes=53, seconds=28))),
        ),
        ("2025-06-24 04:41:55Z", dt.datetime(2025, 6, 24, 4, 41, 55, tzinfo=UTC)),
    ],
)
def test_rich_timestamptz(raw: str, expected: dt.datetime) -> None:
    for _ in range(2):  # the second time the zone comes from the cache
        value = parse("timestamptz", raw, RICH_PARSERS)
        assert value == expected
        assert value.utcoffset() == expected.utcoffset()


def test_rich_dates_and_times() -> None:
    assert parse("date", "2024-01-31", RICH_PARSERS) == dt.date(2024, 1, 31)
    assert parse("time", "12:00:00", RICH_PARSERS) == dt.time(12)
    assert parse("time", "23:59:59.123", RICH_PARSERS) == dt.time(23, 59, 59, 123000)
    timetz = parse("timetz", "12:00:00+00", RICH_PARSERS)
    assert timetz == dt.time(12, tzinfo=UTC)
    assert timetz.tzinfo is not None
    assert parse("timetz", "08:30:00.25-04:30", RICH_PARSERS) == dt.time(
        8, 30, 0, 250000, tzinfo=dt.timezone(-dt.timedelta(hours=4, minutes=30))
    )


@pytest.mark.parametrize(
    ("pg_type", "raw"),
    [
        ("timestamp", "infinity"),
        ("timestamp", "-infinity"),
        ("timestamp", "0044-03-15 12:00:00 BC"),
        ("timestamp", "10000-01-01 00:00:00"),
        ("timestamptz", "infinity"),
        ("timestamptz", "0044-03-15 12:00:00+00 BC"),
        ("timestamptz", "12345-01-01 00:00:00+00"),
        ("date", "infinity"),
        ("date", "-infinity"),
        ("date", "0001-01-01 BC"),
        ("date", "10000-01-01"),
        ("time", "24:00:00"),
        ("timetz", "24:00:00+00"),
        ("interval", "P1Y2M3DT4H5M6S"),
        ("interval", "PT0S"),
        ("inet", "::1/128"),
    ],
)
def test_rich_values_python_cannot_hold_stay_strings(pg_type: str, raw: str) -> None:
    assert parse(pg_type, raw, RICH_PARSERS) == raw


@pytest.mark.parametrize(
    ("pg_type", "raw"),
    [
        ("timestamp", "2024-13-01 00:00:00"),
        ("timestamp", "2024-02-30 00:00:00"),
        ("timestamp", "2024-08-25 24:00:00"),
        ("timestamp", "2024-08-25 10:49:47.1234567"),
        ("timestamp", "2024-08-25 10:49:47."),
        ("timestamp", "2024-08-25"),
        ("timestamp", "2024-08-25 10:49:47+00"),
        ("timestamp", "Infinity"),
        ("timestamp", "0000-01-01 00:00:00"),
        ("timestamp", "２０２４-08-25 10:49:47"),
        ("timestamptz", "2025-06-24 04:41:55.296"),
        ("timestamptz", "2025-06-24 04:41:55+24"),
        ("timestamptz", "2025-06-24 04:41:55+05:60"),
        ("timestamptz", "2025-06-24 04:41:55+5"),
        ("date", "2024-1-31"),
        ("date", "31-01-2024"),
        ("time", "25:00:00"),
        ("time", "24:00:01"),
        ("time", "12:00"),
        ("timetz", "12:00:00"),
        ("bytea", "0a0b"),
        ("bytea", "\\x0"),
        ("bytea", "\\xzz"),
        ("bytea", "\\x0a 0b"),
        ("bytea", "\\x\u00e9\u00e9"),
        ("uuid", "not-a-uuid"),
        ("uuid", "a0eebc999c0b4ef8bb6d6bb9bd380a11"),
        ("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g"),
    ],
)
def test_rich_parsers_reject_junk(pg_type: str, raw: str) -> None:
    error = parse_error(pg_type, raw, RICH_PARSERS)
    assert error.pg_type == pg_type


def test_rich_bytea_and_uuid() -> None:
    assert parse("bytea", "\\x0a0b", RICH_PARSERS) == b"\x0a\x0b"
    assert parse("bytea", "\\x", RICH_PARSERS) == b""
    assert parse("bytea", "\\xDEADbeef", RICH_PARSERS) == b"\xde\xad\xbe\xef"
    raw = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert parse("uuid", raw, RICH_PARSERS) == uuid.UUID(raw)


# -- arrays (conformance case 22) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{}", []),
        ("{1,2,NULL}", ["1", "2", None]),
        ('{"a b",c}', ["a b", "c"]),
        ("{{1,2},{3,4}}", [["1", "2"], ["3", "4"]]),
        ('{"NULL",NULL,null,NuLl,"null"}', ["NULL", None, None, None, "null"]),
        ('{"",x}', ["", "x"]),
        ('{"a\\"b","c\\\\d","\\e"}', ['a"b', "c\\d", "e"]),
        ('{"{}","a,b"," "}', ["{}", "a,b", " "]),
        ("{ a , b c ,\td\n}", ["a", "b c", "d"]),
        ("{a\\,b,x\\ ,\\NULL}", ["a,b", "x ", "NULL"]),
        ("[0:2]={1,2,3}", ["1", "2", "3"]),
        ("[1:2][-1:0]={{a,b},{c,d}}", [["a", "b"], ["c", "d"]]),
        ("{{{x}}}", [[["x"]]]),
        ("{{},{}}", [[], []]),
        ("  {a}  ", ["a"]),
        ("{user:user_42,report:rep_8812}", ["user:user_42", "report:rep_8812"]),
        ('{user:user_42,"file:q3 sales.csv"}', ["user:user_42", "file:q3 sales.csv"]),
        ("{rows}", ["rows"]),
        ("{NULLS,xNULL}", ["NULLS", "xNULL"]),
        ("{é,日本,\u00a0x}", ["é", "日本", "\u00a0x"]),  # only ASCII whitespace is trimmed
    ],
)
def test_parse_pg_array(raw: str, expected: list[Any]) -> None:
    assert parse_pg_array(raw) == expected
    assert parse("text", raw, dims=len(_shape(expected)) or 1) == expected


def _shape(value: Any) -> list[int]:
    return [len(value), *_shape(value[0])] if isinstance(value, list) and value else []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "must start with '{'"),
        ("1,2", "must start with '{'"),
        ("{", "unterminated array"),
        ("{1,2", "unterminated array"),
        ("{{1,2}", "unterminated array"),
        ("{1,2}}", "unexpected text after the closing '}' at position 5"),
        ("{1,2} x", "unexpected text after the closing '}' at position 6"),
        ('{"abc}', "unterminated quoted element starting at position 1"),
        ('{"abc\\"}', "unterminated quoted element"),
        ("{abc\\", "unterminated array"),
        ("{1,{2}}", "elements and sub-arrays mixed"),
        ("{{1},2}", "elements and sub-arrays mixed"),
        ("{{1,2},{3}}", "differ in length (2 and 1"),
        ("{{{1}},{{2},{3}}}", "differ in length"),
        ("{{},{1}}", "differ in length"),
        ("{1,,2}", "empty unquoted element at position 3"),
        ("{1,}", "empty unquoted element"),
        ("{,}", "empty unquoted element"),
        ('{a"b"}', "unexpected '\"' inside an unquoted element at position 2"),
        ("{a{b}}", "unexpected '{' inside an unquoted element"),
        ('{"a" b}', "expected ',' or '}' at position 5, found 'b'"),
        ("{{1} {2}}", "expected ',' or '}'"),
        ("{{{{{{{1}}}}}}}", "more than 6 dimensions"),
        ("[1:2{1}", "malformed dimension decoration"),
        ("[1:2]{1}", "malformed dimension decoration"),
        ("[0:2]=", "must start with '{'"),
    ],
)
def test_parse_pg_array_rejects_malformed_literals(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_pg_array(raw)
    error = parse_error("int4", raw, dims=1)
    assert error.pg_type == "int4[]"
    assert isinstance(error.__cause__, ValueError)


def test_array_elements_are_typed() -> None:
    assert parse("int4", "{1,2,NULL}", dims=1) == [1, 2, None]
    assert parse("int8", "{{9007199254740993},{-1}}", dims=2) == [[9007199254740993], [-1]]
    assert parse("bool", "{t,false,NULL}", dims=1) == [True, False, None]
    assert parse("float8", "{NaN,1.5}", dims=1)[1] == 1.5
    assert parse("numeric", '{"1.50"}', dims=1) == [Decimal("1.50")]
    assert parse("jsonb", '{"{\\"a\\": 1}",NULL,"[]"}', dims=1) == [{"a": 1}, None, []]
    assert parse("timestamp", '{"2024-01-01 00:00:00",infinity}', RICH_PARSERS, dims=1) == [
        dt.datetime(2024, 1, 1),
        "infinity",
    ]
    assert parse("text", '{"NULL",NULL}', dims=1) == ["NULL", None]


def test_array_element_errors_name_the_column() -> None:
    error = parse_error("int4", "{1,x}", dims=1)
    assert (error.column, error.pg_type, error.value) == ("c", "int4[]", "{1,x}")
    assert "not an integer" in str(error)


def test_box_arrays_use_semicolons() -> None:
    raw = "{(1,1),(0,0);(3,3),(2,2)}"
    assert parse("box", raw, dims=1) == ["(1,1),(0,0)", "(3,3),(2,2)"]
    assert parse_pg_array(raw, delimiter=";") == ["(1,1),(0,0)", "(3,3),(2,2)"]


def test_parse_pg_array_applies_the_element_parser() -> None:
    assert parse_pg_array("{1,NULL,3}", int) == [1, None, 3]
    with pytest.raises(ValueError, match="invalid literal"):
        parse_pg_array("{1,x}", int)


@pytest.mark.parametrize("delimiter", ["", ",,", "{", "}", '"', "\\", " ", "\t"])
def test_parse_pg_array_rejects_impossible_delimiters(delimiter: str) -> None:
    with pytest.raises(ValueError, match="cannot be an array delimiter"):
        parse_pg_array("{}", delimiter=delimiter)


@pytest.mark.parametrize(
    "raw",
    [
        '{"' + "\\x" * 100_000 + '"}',
        '{"' + '\\"' * 100_000 + '"}',
        "{" + "a\\," * 100_000 + "}",
        "{" + "a," * 100_000 + "a}",
        "{" + "{1}," * 50_000 + "{1}}",
        '{"' + "\\" * 200_001 + "}",  # unterminated
        "{" + " " * 200_000,  # unterminated
        "[1:1]" * 50_000 + "={1}",
    ],
)
def test_parse_pg_array_is_linear(raw: str) -> None:
    started = time.perf_counter()
    with contextlib.suppress(ValueError):
        parse_pg_array(raw)
    assert time.perf_counter() - started < 1.0


# -- rows: nulls, junk, unknown columns (conformance case 23) -------------------------------


def test_trigger_fixture_rows() -> None:
    parser = RowParser(parse_schema_header(TRIGGER_SCHEMA))
    row_a = {
        "id": "cmek7q1xv0003l50ahz2b9r4d",
        "createdAt": "2026-08-20 09:14:03.512",
        "number": "1843",
        "isTest": "false",
        "costInCents": "0",
        "runTags": "{user:user_42,report:rep_8812}",
        "error": None,
        "realtimeStreams": "{}",
        "payloadType": "application/super+json",  # not in the schema: left raw
    }
    assert parser(row_a) is row_a  # converted in place
    assert row_a == {
        "id": "cmek7q1xv0003l50ahz2b9r4d",
        "createdAt": "2026-08-20 09:14:03.512",
        "number": 1843,
        "isTest": False,
        "costInCents": 0.0,
        "runTags": ["user:user_42", "report:rep_8812"],
        "error": None,
        "realtimeStreams": [],
        "payloadType": "application/super+json",
    }
    row_b = parser(
        {
            "isTest": "f",
            "costInCents": "0.38571",
            "runTags": '{user:user_42,"file:q3 sales.csv"}',
            "realtimeStreams": "{rows}",
            "error": '{"name": "Error", "message": "boom"}',
        }
    )
    assert row_b["runTags"] == ["user:user_42", "file:q3 sales.csv"]
    assert row_b["realtimeStreams"] == ["rows"]
    assert row_b["error"] == {"name": "Error", "message": "boom"}
    assert row_b["isTest"] is False
    rich = RowParser(parse_schema_header(TRIGGER_SCHEMA), RICH_PARSERS)
    assert rich({"createdAt": "2026-08-20 09:15:10.02"}) == {
        "createdAt": dt.datetime(2026, 8, 20, 9, 15, 10, 20000)
    }


NOT_NULL_SCHEMA = {
    "id": {"type": "int8", "not_null": True, "pk_index": 0},
    "tags": {"type": "text", "dims": 1, "not_null": True},
    "note": {"type": "text"},
}


def test_null_in_a_not_null_column_is_an_error_by_default() -> None:
    parser = RowParser(NOT_NULL_SCHEMA)
    assert parser({"id": "1", "note": None}) == {"id": 1, "note": None}
    for column in ("id", "tags"):
        with pytest.raises(ValueParseError, match="null in a NOT NULL column") as caught:
            parser({"id": "1", column: None})
        assert caught.value.column == column
        assert caught.value.value is None
    # Null elements are fine: NOT NULL is about the column value.
    assert parser({"tags": "{a,NULL}"}) == {"tags": ["a", None]}


def test_null_in_a_not_null_column_can_be_tolerated(caplog: pytest.LogCaptureFixture) -> None:
    parser = RowParser(NOT_NULL_SCHEMA, strict_not_null=False)
    with caplog.at_level(logging.WARNING, logger=values.__name__):
        assert parser({"id": None, "tags": None}) == {"id": None, "tags": None}
        assert parser({"id": None}) == {"id": None}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # once per column
    assert "'id' (int8)" in warnings[0].getMessage()
    assert "'tags' (text[])" in warnings[1].getMessage()


@pytest.mark.parametrize("junk", [5, 1.5, True, False, [], ["1"], {}, {"a": "1"}])
@pytest.mark.parametrize("column", ["id", "note", "unknown"])
def test_values_that_are_not_strings_are_rejected(junk: Any, column: str) -> None:
    with pytest.raises(ValueParseError, match="string or null") as caught:
        RowParser(NOT_NULL_SCHEMA)({column: junk})
    assert caught.value.column == column
    assert caught.value.value == junk
    if column == "unknown":
        assert caught.value.pg_type == "not in the schema"


@pytest.mark.parametrize("junk", [None, "x", 1, ["a"]])
def test_a_value_that_is_not_an_object_is_malformed(junk: Any) -> None:
    with pytest.raises(MalformedResponseError, match="not an object of columns"):
        RowParser(NOT_NULL_SCHEMA)(junk)


def test_custom_parsers_override_defaults_and_get_the_column_info() -> None:
    seen: list[tuple[str, Any]] = []

    def cents(text: str, info: Any) -> int:
        seen.append((text, info.get("scale")))
        return round(Decimal(text) * 100)

    schema = {
        "price": {"type": "numeric", "scale": 2},
        "prices": {"type": "numeric", "dims": 1, "scale": 2},
        "doc": {"type": "jsonb"},
    }
    parser = RowParser(schema, {"numeric": cents, "jsonb": keep_text})
    row = parser({"price": "1.25", "prices": "{2.50,NULL}", "doc": '{"a": 1}'})
    assert row == {"price": 125, "prices": [250, None], "doc": '{"a": 1}'}
    assert seen == [("1.25", 2), ("2.50", 2)]


def test_custom_parser_failures_become_value_parse_errors() -> None:
    def broken(text: str, info: Any) -> Any:
        return {}[text]

    with pytest.raises(ValueParseError, match="'x'") as caught:
        parse("mytype", "x", {"mytype": broken})
    assert isinstance(caught.value.__cause__, KeyError)


def test_public_names() -> None:
    assert set(values.__all__) == {
        "DEFAULT_PARSERS",
        "RICH_PARSERS",
        "ColumnInfo",
        "Parser",
        "RowParser",
        "Schema",
        "keep_text",
        "parse_pg_array",
        "parse_schema_header",
    }
    assert issubclass(ValueParseError, MalformedResponseError)
    assert issubclass(MalformedResponseError, ReplicaError)


# -- properties -------------------------------------------------------------------------------

_PG_SPACE = " \t\n\r\v\f"
_tricky_text = st.sampled_from(
    ["NULL", "null", "NuLl", "", " ", '"', "\\", "\\\\", "{", "}", ",", ";", "a b", "\\N", "{}"]
)
_element = st.none() | _tricky_text | st.text(max_size=12)


def _quote(item: str, delimiter: str) -> str:
    """An element as Postgres's array_out writes it."""
    if (
        item == ""
        or item.lower() == "null"
        or any(c in item for c in '{}"\\' + delimiter + _PG_SPACE)
    ):
        return '"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return item


def _serialize(value: Any, delimiter: str, pad: str) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return _quote(value, delimiter)
    inner = (pad + delimiter + pad).join(_serialize(v, delimiter, pad) for v in value)
    return "{" + pad + inner + pad + "}"


@st.composite
def _rectangular_arrays(draw: st.DrawFn) -> list[Any]:
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    size = math.prod(shape)
    flat = draw(st.lists(_element, min_size=size, max_size=size))
    for length in reversed(shape[1:]):
        flat = [flat[i : i + length] for i in range(0, len(flat), length)]
    return flat


@settings(max_examples=250, deadline=None)
@given(
    array=_rectangular_arrays() | st.just([]),
    delimiter=st.sampled_from([",", ";"]),
    pad=st.sampled_from(["", " ", "\n\t "]),
    decorate=st.booleans(),
)
def test_array_literals_round_trip(
    array: list[Any], delimiter: str, pad: str, decorate: bool
) -> None:
    literal = _serialize(array, delimiter, pad)
    if decorate and array:
        literal = "".join(f"[0:{n - 1}]" for n in _shape(array)) + "=" + literal
    assert parse_pg_array(literal, delimiter=delimiter) == array


_int8 = st.integers(-(2**63), 2**63 - 1)
_any_int = _int8 | st.integers() | st.integers(-(10**300), 10**300)


@settings(max_examples=300, deadline=None)
@given(number=_any_int, numbers=st.lists(st.none() | _any_int, max_size=5))
def test_ints_survive_exactly(number: int, numbers: list[int | None]) -> None:
    schema = {
        "n": {"type": "int8"},
        "ns": {"type": "int8", "dims": 1},
        "doc": {"type": "jsonb"},
    }
    literal = "{" + ",".join("NULL" if n is None else str(n) for n in numbers) + "}"
    document = json.dumps({"n": number, "ns": numbers})
    row = RowParser(schema)({"n": str(number), "ns": literal, "doc": document})
    assert row == {"n": number, "ns": numbers, "doc": {"n": number, "ns": numbers}}
    assert type(row["n"]) is int


_ARRAYISH = st.text(alphabet='{}",\\; \tNULnul[]:=-0123456789.abeTZ+x', max_size=30)
_TYPES = [
    *sorted(RICH_PARSERS),
    "text",
    "interval",
    "box",
    "TaskRunStatus",
]


@settings(max_examples=300, deadline=None)
@given(
    pg_type=st.sampled_from(_TYPES),
    dims=st.sampled_from([0, 0, 1, 2]),
    raw=st.text(max_size=30) | _ARRAYISH,
    rich=st.booleans(),
)
def test_junk_text_raises_only_value_parse_errors(
    pg_type: str, dims: int, raw: str, rich: bool
) -> None:
    parser = RowParser({"c": {"type": pg_type, "dims": dims}}, RICH_PARSERS if rich else None)
    try:
        parser({"c": raw})
    except ValueParseError as error:
        caught = error
    else:
        return
    assert (caught.column, caught.value) == ("c", raw)


@settings(max_examples=200, deadline=None)
@given(raw=_ARRAYISH | st.text(max_size=40))
def test_junk_array_literals_raise_only_value_errors(raw: str) -> None:
    # A leading space bypasses the fast path for flat literals: both paths must agree.
    outcomes = []
    for literal in (raw, " " + raw):
        try:
            outcomes.append(parse_pg_array(literal))
        except ValueError as error:
            outcomes.append("error" if str(error) else "error without a message")
    assert outcomes[0] == outcomes[1]
    assert "error without a message" not in outcomes


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)


@settings(max_examples=100, deadline=None)
@given(
    junk=_json_values.filter(lambda v: v is not None and not isinstance(v, str)),
    column=st.sampled_from(["id", "tags", "note", "other"]),
)
def test_non_string_values_always_raise_value_parse_errors(junk: Any, column: str) -> None:
    with pytest.raises(ValueParseError):
        RowParser(NOT_NULL_SCHEMA)({"id": "1", column: junk})


@settings(max_examples=200, deadline=None)
@given(
    header=st.text(max_size=40)
    | _json_values.map(json.dumps)
    | st.dictionaries(st.text(max_size=3), _json_values, max_size=3).map(json.dumps)
    | st.dictionaries(
        st.text(max_size=3),
        st.fixed_dictionaries(
            {"type": st.sampled_from(_TYPES) | _json_values},
            optional={"dims": _json_values, "not_null": _json_values},
        ),
        max_size=3,
    ).map(json.dumps)
)
def test_junk_schema_headers_raise_only_malformed_response_errors(header: str) -> None:
    try:
        schema = parse_schema_header(header)
    except MalformedResponseError:
        return
    RowParser(schema)  # whatever passes the check is usable
    for info in schema.values():
        assert isinstance(info["type"], str)


# -- the big-integer guard ------------------------------------------------------------------

_LONG_RUN = re.compile(r"[0-9]{19}")


@given(
    st.text(
        alphabet=st.sampled_from([*"0123456789", "a", ",", "é", "٣", "\ud800", "𝟗"]),
        max_size=80,
    )
)
def test_long_digit_run_check_agrees_with_the_regex(text: str) -> None:
    assert has_long_digit_run(text) == (_LONG_RUN.search(text) is not None)


def test_long_digit_runs_are_found_anywhere() -> None:
    assert has_long_digit_run('{"n":12345678901234567890}')
    assert has_long_digit_run("1234567890123456789")
    assert not has_long_digit_run("123456789012345678,123456789012345678")
    assert not has_long_digit_run("")
