"""Mutational fuzzing of everything an upstream body goes through, with Hypothesis.

The unit tests of each parser already throw junk at it (tests/protocol, tests/sources).
Here the inputs start from real traffic (the Trigger.dev fixtures of tests/sources/data,
an Electric page, superjson documents made by the real library) and are mutated a few
bytes or a few JSON nodes at a time, so they get deep into the parsers before breaking
something. Each target states its contract:

- wire (a whole response: schema header, body, then the mapping to local rows, for a
  TaskRun feed and a plain Electric table): a usable batch, or `MalformedResponseError`;
- values (every Postgres type's parser, arrays too): a value, or `ValueParseError` naming
  the column and the text;
- packets (payload/output/metadata by content type): never raises, and what it stores is
  JSON text (or SQL NULL); a problem is reported, never hidden;
- superjson: never raises, never modifies its input, and the result can be stored as JSON.

The counts of inputs tried are recorded (docs/reliability.md); `REPLICA_SOAK=1` tries ten
times more.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replica.errors import MalformedResponseError, ValueParseError
from replica.protocol.messages import parse_body
from replica.protocol.values import RICH_PARSERS, RowParser, parse_schema_header
from replica.sources import superjson
from replica.sources.electric import ElectricMapper, table_spec
from replica.sources.packets import decode_packet, packet_json, to_json_text
from replica.sources.taskrun import RunMapper
from tests.sources.helpers import DATA

from .support import record, scaled

COUNTS: Counter[str] = Counter()
OUTCOMES: dict[str, Counter[str]] = {}


def fuzz_settings(ci: int) -> Callable[[Any], Any]:
    return settings(
        max_examples=scaled(ci, ci * 10),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def outcome(target: str, result: str) -> None:
    COUNTS[target] += 1
    OUTCOMES.setdefault(target, Counter())[result] += 1


@pytest.fixture(scope="module", autouse=True)
def _report() -> Any:
    yield
    record(
        "fuzzing",
        **{f"{target}_inputs": COUNTS[target] for target in sorted(COUNTS)},
        **{f"{target}_outcomes": dict(OUTCOMES[target]) for target in sorted(OUTCOMES)},
    )


# -- seeds ----------------------------------------------------------------------------------

TASKRUN_SCHEMA = (DATA / "electric_schema.json").read_text().strip()
TASKRUN_BODIES = [
    (DATA / f"{name}.json").read_bytes() for name in ("tag_snapshot", "live_update_c", "run_d")
]
ITEMS_SCHEMA = json.dumps(
    {
        "id": {"type": "int4", "pk_index": 0, "not_null": True},
        "title": {"type": "text"},
        "price": {"type": "numeric"},
        "tags": {"type": "text", "dims": 1},
        "doc": {"type": "jsonb"},
        "seen": {"type": "timestamptz"},
        "done": {"type": "bool"},
    }
)
ITEMS_BODY = json.dumps(
    [
        {
            "key": '"public"."items"/"1"',
            "value": {
                "id": "1",
                "title": "a",
                "price": "12.50",
                "tags": '{x,"y z"}',
                "doc": '{"n": 1, "a": [true, null]}',
                "seen": "2026-08-20 09:14:03.512+00",
                "done": "t",
            },
            "headers": {"operation": "insert", "relation": ["public", "items"]},
        },
        {
            "key": '"public"."items"/"1"',
            "value": {"id": "1", "title": "b"},
            "old_value": {"title": "a"},
            "headers": {"operation": "update", "lsn": "1234", "last": True},
        },
        {"key": '"public"."items"/"2"', "value": {"id": "2"}, "headers": {"operation": "delete"}},
        {"headers": {"control": "up-to-date", "global_last_seen_lsn": "1234"}},
    ]
).encode()

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["t", "f", "-1", "0_inf", "1e400", "{}", "[]", "NaN", "insert", "update"])
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)


def mutate_bytes(data: st.DataObject, raw: bytes) -> bytes:
    """A few byte-level edits: flips, insertions, deletions, a truncation."""
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        kind = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = data.draw(st.integers(0, max(len(out) - 1, 0)))
        if kind == "flip" and out:
            out[at] = data.draw(st.integers(0, 255))
        elif kind == "insert":
            out[at:at] = data.draw(st.binary(min_size=1, max_size=6))
        elif kind == "delete":
            del out[at : at + data.draw(st.integers(1, 8))]
        else:
            del out[at:]
    return bytes(out)


def mutate_tree(data: st.DataObject, tree: Any) -> Any:
    """A few structural edits of a JSON document: replace, remove, retype or duplicate a
    node found by a random walk."""
    tree = copy.deepcopy(tree)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        parent, key = None, None
        node = tree
        while isinstance(node, list | dict) and node and data.draw(st.booleans()):
            keys = list(range(len(node))) if isinstance(node, list) else list(node)
            key = data.draw(st.sampled_from(keys))
            parent, node = node, node[key]
        if parent is None:
            continue
        kind = data.draw(st.sampled_from(["replace", "remove", "retype", "duplicate"]))
        if kind == "replace":
            parent[key] = data.draw(json_values)  # type: ignore[index]
        elif kind == "remove":
            del parent[key]  # type: ignore[arg-type]
        elif kind == "retype":
            parent[key] = json.dumps(node) if not isinstance(node, str) else [node]  # type: ignore[index]
        elif isinstance(parent, list):
            parent.insert(key, copy.deepcopy(node))  # type: ignore[arg-type]
        else:
            parent[f"{key}_copy"] = copy.deepcopy(node)
    return tree


def mutated_body(data: st.DataObject, raw: bytes) -> bytes:
    if data.draw(st.booleans(), label="bytes or tree"):
        return mutate_bytes(data, raw)
    return json.dumps(mutate_tree(data, json.loads(raw))).encode()


# -- wire: header, body and mapping -------------------------------------------------------


def lookup(_key: str) -> None:
    return None


def refused(error: MalformedResponseError) -> None:
    """A refusal is a typed error with a message that says what is wrong."""
    message = str(error)
    assert len(message) > 10, message
    outcome("wire", "typed error")


@fuzz_settings(600)
@given(data=st.data())
def test_fuzz_wire_taskrun_feed(data: st.DataObject) -> None:
    raw = mutated_body(data, data.draw(st.sampled_from(TASKRUN_BODIES)))
    header = TASKRUN_SCHEMA
    if data.draw(st.integers(0, 9)) == 0:
        header = mutated_body(data, header.encode()).decode("utf-8", "replace")
    try:
        parsed = parse_body(raw, RowParser(parse_schema_header(header)))
        rows = asyncio.run(RunMapper(None, lookup).map(parsed.changes))
    except MalformedResponseError as exc:
        refused(exc)
        return
    assert all(row.op in ("insert", "update", "delete") for row in rows)
    outcome("wire", "accepted")


@fuzz_settings(600)
@given(data=st.data())
def test_fuzz_wire_electric_table(data: st.DataObject) -> None:
    raw = mutated_body(data, ITEMS_BODY)
    header = ITEMS_SCHEMA
    if data.draw(st.integers(0, 4)) == 0:
        header = json.dumps(mutate_tree(data, json.loads(header)))
    try:
        schema = parse_schema_header(header)
        parsed = parse_body(raw, RowParser(schema))
        rows = ElectricMapper(table_spec("items", schema)).map(parsed.changes)
    except MalformedResponseError as exc:
        refused(exc)
        return
    for row in rows:
        for value in row.values.values():
            assert value is None or isinstance(value, str | int | float | bytes)
    outcome("wire", "accepted")


# -- values ---------------------------------------------------------------------------------

SEED_VALUES = {
    "int2": "-32768",
    "int4": "2147483647",
    "int8": "-9223372036854775808",
    "float4": "1.5e-3",
    "float8": "-Infinity",
    "numeric": "-12345678901234567890.000001",
    "bool": "t",
    "json": '{"a": [1, 2.5, "x", null, {"b": true}]}',
    "jsonb": '[{"n": 12345678901234567890}]',
    "timestamp": "2026-08-20 09:14:03.512",
    "timestamptz": "2026-08-20 09:14:03.512345+05:30",
    "date": "2026-02-28",
    "time": "24:00:00",
    "timetz": "09:14:03.5-02",
    "bytea": "\\xdeadbeef",
    "uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "text": "plain",
    "TaskRunStatus": "EXECUTING",
}
SEED_ARRAYS = {
    "int4": "{1,NULL,-3,{4}}",
    "text": '{"a,b",NULL,"\\"q\\"",x}',
    "timestamptz": '{"2026-08-20 09:14:03+00",infinity}',
    "numeric": "{1.5,NaN,-0}",
    "bool": "{t,f,NULL}",
    "jsonb": '{"{\\"a\\": 1}",null}',
}


@fuzz_settings(1500)
@given(
    data=st.data(),
    pg_type=st.sampled_from(sorted(SEED_VALUES)),
    array=st.booleans(),
    rich=st.booleans(),
)
def test_fuzz_values(data: st.DataObject, pg_type: str, array: bool, rich: bool) -> None:
    seed = SEED_ARRAYS.get(pg_type, "{" + SEED_VALUES[pg_type] + "}") if array else None
    text = mutate_bytes(data, (seed or SEED_VALUES[pg_type]).encode()).decode("utf-8", "replace")
    parsers = RICH_PARSERS if rich else None
    parser = RowParser({"c": {"type": pg_type, "dims": 1 if array else 0}}, parsers)
    error: ValueParseError | None = None
    try:
        parser({"c": text})
    except ValueParseError as exc:
        error = exc
    if error is not None:
        assert (error.column, error.value) == ("c", text)
    outcome("values", "accepted" if error is None else "typed error")


# -- packets and superjson ------------------------------------------------------------------

SUPERJSON_DOCS = [
    doc
    for vectors in ("superjson_2.2.7.json", "superjson_2.2.1.json")
    for name, doc in json.loads((DATA / vectors).read_text()).items()
    if not name.startswith("_")
]
PACKET_TYPES = [
    "application/json",
    "application/super+json",
    "application/super+json; charset=utf-8",
    "text/plain",
    "application/store",
    "",
    None,
]


@fuzz_settings(1500)
@given(data=st.data(), data_type=st.sampled_from(PACKET_TYPES))
def test_fuzz_packets(data: st.DataObject, data_type: str | None) -> None:
    seed = data.draw(st.sampled_from(SUPERJSON_DOCS))
    seed_text = seed if isinstance(seed, str) else json.dumps(seed)
    text = mutated_body(data, seed_text.encode()).decode("utf-8", "replace")
    problems: list[str] = []
    decoded = decode_packet(text, data_type, on_problem=problems.append)
    stored = packet_json(text, data_type or "application/json", on_problem=problems.append)
    assert stored is None or json.loads(stored) is not None or stored == "null"
    assert all(isinstance(p, str) and p for p in problems)
    outcome("packets", "reported a problem" if problems else "decoded")
    del decoded


@fuzz_settings(1500)
@given(data=st.data())
def test_fuzz_superjson(data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(SUPERJSON_DOCS))
    document = json.loads(seed) if isinstance(seed, str) else seed
    document = mutate_tree(data, document)
    before = json.dumps(document, sort_keys=True)
    problems: list[str] = []
    value = superjson.decode(document, on_problem=problems.append)
    assert json.dumps(document, sort_keys=True) == before, "the input was modified"
    try:
        json.loads(to_json_text(value))
    except ValueError as exc:  # a cycle: packet_json stores the raw text instead, reported
        reason = str(exc)
    else:
        reason = ""
    assert not reason or "nested too deeply" in reason or "cycle" in reason, reason
    outcome("superjson", "reported a problem" if problems else "decoded")
