"""The where-clause evaluator: Postgres semantics on rows of text forms."""

from __future__ import annotations

import pytest

from replica.devserver.pgtypes import parse_type
from replica.devserver.where import WhereError, compile_where

COLUMNS = {
    name: parse_type(t)
    for name, t in {
        "id": "text",
        "n": "int4",
        "big": "int8",
        "x": "float8",
        "price": "numeric",
        "done": "bool",
        "at": "timestamp(3)",
        "tags": "text[]",
        "nums": "int4[]",
        "note": "text",
        "doc": "jsonb",
        "status": "TaskRunStatus",
    }.items()
}
ROW = {
    "id": "abc",
    "n": "5",
    "big": "9007199254740993",
    "x": "1.5",
    "price": "10.50",
    "done": "true",
    "at": "2026-08-20 09:14:03.5",
    "tags": '{user:1234,"file:q3 sales.csv"}',
    "nums": "{1,2,NULL}",
    "note": None,
    "doc": '{"a": 1}',
    "status": "PENDING",
}


@pytest.mark.parametrize(
    ("where", "params", "expected"),
    [
        ("n = 5", {}, True),
        ("n = $1", {"1": "5"}, True),
        ("n > 2 AND done", {}, True),
        ("done = false OR n < 3", {}, False),
        ("NOT done", {}, False),
        ("big = 9007199254740993", {}, True),
        ("x < 2 AND price = 10.5", {}, True),
        ("n + 1 = 6 AND n * 2 = 10 AND n / 2 = 2 AND n % 2 = 1 AND -n = -5", {}, True),
        ("at > '2026-08-20T09:14:03Z' AND at < '2026-08-20 09:14:03.6'", {}, True),
        ("at >= '2026-08-20 09:14:03.500'", {}, True),
        ("tags @> ARRAY['user:1234']", {}, True),
        ("tags @> ARRAY['user:1234', 'file:q3 sales.csv']", {}, True),
        ("tags @> ARRAY['user:1234', 'other']", {}, False),
        ("tags && ARRAY['other', 'user:1234']", {}, True),
        ("tags <@ ARRAY['user:1234', 'file:q3 sales.csv', 'z']", {}, True),
        ("tags @> $1", {"1": "{user:1234}"}, True),
        ("n = ANY($1)", {"1": "{1,5}"}, True),
        ("n = ANY(nums)", {}, None),  # 5 not in {1,2,NULL}: NULL
        ("1 = ANY(nums)", {}, True),
        ("id IN ('x', 'abc')", {}, True),
        ("id NOT IN ('x', 'y')", {}, True),
        ("n BETWEEN 1 AND 5", {}, True),
        ("id LIKE 'a%' AND id ILIKE 'A_C' AND id NOT LIKE 'b%'", {}, True),
        ("note IS NULL AND id IS NOT NULL", {}, True),
        ("note = 'x'", {}, None),
        ("note = 'x' OR n = 5", {}, True),
        ("note = 'x' AND n = 5", {}, None),
        ("note IS DISTINCT FROM 'x'", {}, True),
        ("done IS TRUE", {}, True),
        ("n::text = '5' AND '7'::int4 = 7", {}, True),
        ("lower(status) = 'pending' AND upper(id) = 'ABC' AND length(id) = 3", {}, True),
        ("id || '!' = 'abc!'", {}, True),
        ("coalesce(note, 'none') = 'none'", {}, True),
        ("status = 'PENDING'", {}, True),
        ("doc = '{\"a\":1}'", {}, True),
    ],
)
def test_postgres_semantics(where: str, params: dict[str, str], expected: bool | None) -> None:
    compiled = compile_where(where, COLUMNS, params)
    assert compiled.predicate(ROW) is expected
    assert compiled.matches(ROW) is (expected is True)


@pytest.mark.parametrize(
    "where",
    [
        "n = (SELECT 1)",
        "n IN (SELECT 1)",
        "now() > at",
        "random() > 0.5",
        "n",
        "missing = 1",
        "id = 1",
        "n = 'five'",
        "n = $2",
        "n >",
        "1; DROP TABLE x",
        "t.n = 1",
        "doc > '{}'",
    ],
)
def test_refused(where: str) -> None:
    with pytest.raises(WhereError):
        compile_where(where, COLUMNS, {"1": "1"})


def test_equalities_are_reported_for_routing() -> None:
    compiled = compile_where("\"id\" = 'abc' AND n > 1", COLUMNS)
    assert compiled.equalities == {"id": "abc"}
    assert compiled.columns == {"id", "n"}
