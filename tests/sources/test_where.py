"""A where clause that does not parse is explained in SQL terms, with the clause shown."""

from __future__ import annotations

import pytest

from replica.errors import ShapeDefinitionError
from replica.sources.where import check_where


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        ("id >", "> needs a value on its right"),
        ("status = 'a' and", "AND needs a value on its right"),
        ("and x = 1", "AND needs a value on its left"),
        ("1 +", "+ needs a value on its right"),
        ("(id = 1", "a parenthesis is opened but not closed"),
        ("id in (1,2", "a parenthesis is opened but not closed"),
        ("id = 'abc", "a quoted string ('...') is not closed"),
        ('name = "x', 'a quoted name ("...") is not closed'),
        ("foo bar baz", "unexpected 'baz'"),
    ],
)
def test_a_clause_that_does_not_parse_is_explained(where: str, problem: str) -> None:
    with pytest.raises(ShapeDefinitionError) as raised:
        check_where(where)
    message = raised.value.message
    assert message.startswith(f"the where clause {where!r} does not parse: {problem}")
    assert "sqlglot" not in message and "<class" not in message and "keyword" not in message


def test_a_valid_clause_is_kept_as_written() -> None:
    assert (
        check_where(" priority > $1 AND done = false ", ["2"]) == "priority > $1 AND done = false"
    )


@pytest.mark.parametrize(
    "where",
    [
        "id IN (SELECT item_id FROM tags WHERE tag = 'x')",
        "EXISTS (SELECT 1 FROM t WHERE t.id = 1)",
        "id = (SELECT max(id) FROM items)",
    ],
)
def test_a_subquery_is_refused_because_rows_could_not_move_out(where: str) -> None:
    # A real Electric server follows such shapes with move-in/move-out events; a row that
    # moved out would stay in the replica forever.
    with pytest.raises(ShapeDefinitionError, match="subquery") as raised:
        check_where(where)
    assert "move-out" in raised.value.hint
