"""Checking a user's Postgres WHERE clause before any request is made.

Electric evaluates the clause server-side; a typo should not cost a round trip and a 400,
so it is parsed with sqlglot (Postgres dialect) and its `$n` parameters are counted here.
sqlglot is imported on first use: a sync of Trigger.dev feeds alone never loads it (~9 MB).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from replica.errors import ShapeDefinitionError

if TYPE_CHECKING:
    from sqlglot import exp


def check_where(where: str, params: Sequence[object] = ()) -> str:
    """Return `where` unchanged if it is one boolean expression whose `$1..$n` match
    `params`; raise `ShapeDefinitionError` saying what is wrong otherwise."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    statement_kinds = (exp.Insert, exp.Update, exp.Delete, exp.Drop, exp.Create, exp.Command)
    text = where.strip()
    if not text:
        raise ShapeDefinitionError("the where clause is empty")
    try:
        statements = [s for s in sqlglot.parse(text, read="postgres") if s is not None]
    except (ParseError, TokenError) as exc:
        raise ShapeDefinitionError(
            f"the where clause is not valid SQL: {_first_line(exc)}"
        ) from None
    if len(statements) != 1:
        raise ShapeDefinitionError(
            "the where clause must be a single expression, not several statements"
        )
    try:
        condition = exp.condition(text, dialect="postgres")
    except (ParseError, TokenError) as exc:
        raise ShapeDefinitionError(
            f"the where clause is not valid SQL: {_first_line(exc)}"
        ) from None
    if isinstance(condition, statement_kinds) or condition.find(*statement_kinds):
        raise ShapeDefinitionError("the where clause must be an expression, not a statement")
    if isinstance(condition, exp.Select | exp.Subquery | exp.Literal | exp.Column):
        raise ShapeDefinitionError(
            f"the where clause must be a condition such as \"status = 'active'\", got {text!r}"
        )
    used = sorted({_position(p) for p in condition.find_all(exp.Parameter)})
    if used and used != list(range(1, used[-1] + 1)):
        raise ShapeDefinitionError(
            f"the where clause numbers its parameters {used}; use $1..$n in order"
        )
    wanted = used[-1] if used else 0
    if wanted != len(params):
        raise ShapeDefinitionError(
            f"the where clause uses {wanted} parameter(s) ($1..${wanted}) but {len(params)} param "
            "value(s) were given"
            if wanted
            else f"the where clause uses no $n parameters but {len(params)} param value(s) "
            "were given"
        )
    return text


def _position(parameter: exp.Parameter) -> int:
    try:
        return int(parameter.name)
    except ValueError:
        raise ShapeDefinitionError(
            f"the where clause parameter ${parameter.name} is not numbered; use $1, $2, ..."
        ) from None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
