"""superjson decoding, against documents produced by the real superjson library.

The vectors in data/superjson_*.json were made by superjson 2.2.7 (current, `meta.v` 1) and
2.2.1 (what the Trigger.dev SDK pins: legacy paths); see make_superjson_vectors.mjs.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replica.sources.superjson import decode, parse_path
from tests.sources.helpers import DATA

CURRENT = json.loads((DATA / "superjson_2.2.7.json").read_text())
LEGACY = json.loads((DATA / "superjson_2.2.1.json").read_text())


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def run(text: str) -> tuple[Any, list[str]]:
    problems: list[str] = []
    return decode(json.loads(text), on_problem=problems.append), problems


EXPECTED: dict[str, Any] = {
    "date": {"requestedAt": utc(2026, 8, 20, 9, 14, 3, 401000), "n": 1},
    "root_date": utc(2026, 8, 20, 9, 14, 3, 401000),
    "bigint": {"small": 12, "big53": 2**53 + 1, "big64": 2**64 + 7, "neg": -(2**70)},
    # 1 and true are distinct Map keys in JavaScript but equal in Python: pairs, not a dict.
    "map_nonstring": {"m": [[1, "one"], [True, "yes"], [None, "nil"], ["s", utc(1970, 1, 1)]]},
    "map_date_key": {utc(1970, 1, 2): 5},
    "map_object_key": [[{"a": 1}, "obj"], [[1, 2], "arr"]],
    "set": {"s": [3, 1, 2, "x", utc(1970, 1, 1, 0, 0, 1)]},
    "undef": {"b": [1, None, 3], "c": 2},
    "root_undefined": None,
    "regexp": {"r": "/ab+c/gi", "r2": "/a\\/b/"},
    "dotted": {
        "a.b": {"c.d": utc(1970, 1, 1)},
        "x\\y": {"z": 1},
        "p\\.q": utc(1970, 1, 1, 0, 0, 2),
        "": utc(1970, 1, 1, 0, 0, 3),
    },
    "nested_map_in_set": [{"k": [utc(1970, 1, 1, 0, 0, 5)]}],
    "refs": {"a": {"x": 1}, "b": {"x": 1}, "c": [{"x": 1}, {"d": {"x": 1}}]},
    "dedupe_refs": {"a": {"x": 1}, "b": {"x": 1}, "c": [{"x": 1}, {"d": {"x": 1}}]},
    "refs_map": {"m": {"k": {"v": 1}}, "o": {"v": 1}},
    "error": {"e": {"name": "Error", "message": "boom"}},
    "url": {"u": "https://example.com/a?b=1"},
    # Year 10000 does not fit a datetime: the ISO string is kept.
    "big_date": {"d": "+010000-01-01T00:00:00.000Z", "old": utc(99, 5, 6, 7, 8, 9, 10000)},
    "array_of_maps": [{1: 2}, {"a": None}],
    "plain": {"a": [1, "two", None, True], "b": {"c": 1.5}},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_current_superjson_vectors(name: str) -> None:
    value, problems = run(CURRENT[name])
    assert value == EXPECTED[name]
    assert problems == []


def test_every_vector_has_an_expectation() -> None:
    special = {"numbers", "typed", "cycle", "cycle_child"}
    assert set(CURRENT) - {"_generator"} == set(EXPECTED) | special


def test_special_numbers() -> None:
    value, problems = run(CURRENT["numbers"])
    assert math.isnan(value["nan"]) and math.isnan(value["arr"][0])
    assert value["inf"] == math.inf and value["ninf"] == -math.inf
    assert value["nz"] == 0 and math.copysign(1, value["nz"]) == -1
    assert value["arr"][1] == 1
    assert problems == []


def test_typed_arrays() -> None:
    value, _ = run(CURRENT["typed"])
    assert value["t"] == [1, 2, 3]
    assert math.isnan(value["f"][0]) and math.copysign(1, value["f"][1]) == -1
    assert value["f"][2] == 1.5


def test_shared_references_are_restored() -> None:
    value, _ = run(CURRENT["refs"])
    assert value["a"] is value["b"] is value["c"][0] is value["c"][1]["d"]
    value, _ = run(CURRENT["dedupe_refs"])  # deduped: the copies were null on the wire
    assert value["a"] is value["b"] is value["c"][1]["d"]
    value, _ = run(CURRENT["refs_map"])  # through a Map value
    assert value["m"]["k"] is value["o"]


@pytest.mark.parametrize("name", ["cycle", "cycle_child"])
def test_cycles_are_not_restored(name: str) -> None:
    value, problems = run(CURRENT[name])
    assert (
        value == {"name": "root", "self": None} if name == "cycle" else {"c": {"n": 1, "me": None}}
    )
    assert len(problems) == 1 and "cycle" in problems[0]


def test_legacy_superjson_vectors() -> None:
    # superjson 2.2.1 did not escape every dotted key: those annotations cannot be found and
    # are skipped (superjson itself would throw); everything else decodes.
    value, problems = run(LEGACY["dotted"])
    assert value == {
        "a.b": {"c.d": "1970-01-01T00:00:00.000Z"},
        "x\\y": {"z": 1},  # a lone backslash is literal in legacy paths
        "k.1": "1970-01-01T00:00:01.000Z",
    }
    assert len(problems) == 2
    assert run(LEGACY["map_nonstring"])[0] == {"m": {1: "one", "s": utc(1970, 1, 1)}}
    assert run(LEGACY["nested_map_in_set"])[0] == [{"k": [utc(1970, 1, 1, 0, 0, 5)]}]
    value, _ = run(LEGACY["refs_map"])
    assert value["m"]["k"] is value["o"]
    assert run(LEGACY["deep"]) == ({"a": {"b": {"c": utc(1970, 1, 1), "d": [None]}}}, [])


def test_input_is_not_modified() -> None:
    document = json.loads(CURRENT["nested_map_in_set"])
    before = json.dumps(document)
    decode(document)
    assert json.dumps(document) == before


def test_without_meta_the_json_part_is_returned() -> None:
    assert decode({"json": {"a": [1]}}) == {"a": [1]}


@pytest.mark.parametrize(
    ("text", "legacy", "keys"),
    [
        ("a.b.0", False, ["a", "b", "0"]),
        ("a\\.b.c", False, ["a.b", "c"]),
        ("x\\\\y.z", False, ["x\\y", "z"]),
        ("p\\\\\\.q", False, ["p\\.q"]),
        ("", False, [""]),
        ("x\\y.z", True, ["x\\y", "z"]),
        ("a\\.b", True, ["a.b"]),
    ],
)
def test_parse_path(text: str, legacy: bool, keys: list[str]) -> None:
    assert parse_path(text, legacy=legacy) == keys


def test_parse_path_refuses_unknown_escapes() -> None:
    with pytest.raises(ValueError, match="invalid escape"):
        parse_path("x\\y")


# -- junk meta: never raises, keeps the plain JSON, reports a problem ----------------------

JUNK = [
    {"json": {"a": 1}, "meta": "nope"},
    {"json": {"a": 1}, "meta": {"values": 5, "v": 1}},
    {"json": {"a": 1}, "meta": {"values": {"a": ["Date", "x", "y"]}}},
    {"json": {"a": 1}, "meta": {"values": {"a": ["Date", 5]}}},
    {"json": {"a": 1}, "meta": {"values": {"a": ["Date"]}}},  # not a string
    {"json": {"a": "x"}, "meta": {"values": {"a": ["bigint"]}}},
    {"json": {"a": "x"}, "meta": {"values": {"a": ["number"]}}},
    {"json": {"a": "x"}, "meta": {"values": {"a": ["map"]}}},
    {"json": {"a": [[1]]}, "meta": {"values": {"a": ["map"]}}},
    {"json": {"a": "x"}, "meta": {"values": {"a": ["set"]}}},
    {"json": {"a": 1}, "meta": {"values": {"a": ["regexp"]}}},
    {"json": {"a": 1}, "meta": {"values": {"a": ["Error"]}}},
    {"json": {"a": 1}, "meta": {"values": {"a": ["weird"]}}},
    {"json": {"a": 1}, "meta": {"values": {"a": [["unknown-composite", "x"]]}}},
    {"json": {"a": 1}, "meta": {"values": {"a": [["typed-array", "X"]]}}},
    {"json": {"a": [1]}, "meta": {"values": {"a": [["typed-array", "X"]]}}},  # fine
    {"json": {"a": 1}, "meta": {"values": {"b.c": ["Date"]}}},
    {"json": {"a": [1]}, "meta": {"values": {"a.5": ["undefined"]}}},
    {"json": {"a": [1]}, "meta": {"values": {"a.x": ["undefined"]}}},
    {"json": {"a": 1}, "meta": {"values": {"a.b": ["undefined"]}}},
    {"json": {"a": 1}, "meta": {"values": {"a\\q": ["Date"]}, "v": 1}},
    {"json": {"a": 1}, "meta": {"values": []}},
    {"json": 1, "meta": {"values": ["map", {"0": ["Date"]}]}},
    {"json": {"a": 1}, "meta": {"referentialEqualities": 5}},
    {"json": {"a": 1}, "meta": {"referentialEqualities": {"a": "b"}}},
    {"json": {"a": 1}, "meta": {"referentialEqualities": {"zz": ["a"]}}},
    {"json": {"a": {}}, "meta": {"referentialEqualities": {"a": [5, "nope", "a.b.c"]}}},
    {"json": {"a": {}}, "meta": {"referentialEqualities": [["a"], {"a": ["q"]}]}},
    {"json": {"a": {}}, "meta": {"referentialEqualities": [5]}},
    [1, 2],
    "text",
    {"no-json": 1},
]


@pytest.mark.parametrize("document", JUNK, ids=range(len(JUNK)))
def test_junk_meta_is_reported_not_raised(document: Any) -> None:
    problems: list[str] = []
    value = decode(document, on_problem=problems.append)
    if isinstance(document, dict) and "json" in document:
        assert value == document["json"] or problems == []
    else:
        assert value == document
    assert all(p.startswith("superjson:") for p in problems)


def test_junk_is_logged_by_default(caplog: pytest.LogCaptureFixture) -> None:
    assert decode({"json": {"a": 1}, "meta": {"values": {"a": ["weird"]}}}) == {"a": 1}
    assert "'weird'" in caplog.text


def test_very_deep_documents_are_kept_plain() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    problems: list[str] = []
    document = {"json": deep, "meta": {"values": {"0": ["undefined"]}}}
    assert decode(document, on_problem=problems.append) is deep
    assert "nested too deeply" in problems[0]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)
annotation = st.sampled_from(
    ["Date", "bigint", "map", "set", "undefined", "regexp", "number", "Error", "URL", "zz"]
)
paths = st.lists(st.sampled_from(["a", "0", "1", "b.c", "a\\.b", ""]), max_size=3).map(".".join)
trees = st.recursive(
    st.lists(annotation, min_size=1, max_size=1),
    lambda children: (
        st.tuples(annotation, st.dictionaries(paths, children, max_size=3)).map(list)
        | st.dictionaries(paths, children, max_size=3)
    ),
    max_leaves=6,
)


@given(
    json_values,
    st.one_of(json_values, trees),
    st.one_of(json_values, st.dictionaries(paths, st.lists(paths, max_size=3), max_size=3)),
    st.sampled_from([None, 0, 1]),
)
def test_decode_never_raises(value: Any, values: Any, equalities: Any, version: Any) -> None:
    meta: dict[str, Any] = {"values": values, "referentialEqualities": equalities}
    if version is not None:
        meta["v"] = version
    decode({"json": value, "meta": meta}, on_problem=lambda _: None)
