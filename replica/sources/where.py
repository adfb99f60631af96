"""Checking a user's Postgres WHERE clause before any request is made.

Electric evaluates the clause server-side; a typo should not cost a round trip and a 400,
so it is parsed with sqlglot (Postgres dialect) and its `$n` parameters are counted here.
sqlglot is imported on first use: a sync of Trigger.dev feeds alone never loads it (~9 MB).
"""

from __future__ import annotations

import re
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
        raise _unparsable(text, exc) from None
    if len(statements) != 1:
        raise ShapeDefinitionError(
            "the where clause must be a single expression, not several statements"
        )
    try:
        condition = exp.condition(text, dialect="postgres")
    except (ParseError, TokenError) as exc:
        raise _unparsable(text, exc) from None
    if isinstance(condition, statement_kinds) or condition.find(*statement_kinds):
        raise ShapeDefinitionError("the where clause must be an expression, not a statement")
    if not isinstance(condition, exp.Select) and condition.find(exp.Select, exp.Subquery):
        raise ShapeDefinitionError(
            f"the where clause {text!r} has a subquery, which replica does not follow",
            hint="Electric answers subqueries with move-in/move-out events; rows that moved "
            "out would stay in the replica. Use a condition on the table's own columns",
        )
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


#: How operators are written, for parse errors about them (sqlglot names them by class).
_OPERATORS = {
    "GT": ">",
    "GTE": ">=",
    "LT": "<",
    "LTE": "<=",
    "EQ": "=",
    "NEQ": "<>",
    "And": "AND",
    "Or": "OR",
    "Not": "NOT",
    "Add": "+",
    "Sub": "-",
    "Mul": "*",
    "Div": "/",
    "Mod": "%",
    "Like": "LIKE",
    "ILike": "ILIKE",
    "In": "IN",
    "Is": "IS",
    "Between": "BETWEEN",
    "DPipe": "||",
}
_MISSING = re.compile(r"Required keyword: '(\w+)' missing for <class '[\w.]*\.(\w+)'>")


def _unparsable(text: str, exc: Exception) -> ShapeDefinitionError:
    """What is wrong with a clause sqlglot could not parse, said in SQL terms (sqlglot's
    own messages name its classes), with the clause and where in it."""
    found = getattr(exc, "errors", None) or [{}]
    first = found[0]
    description = str(first.get("description") or exc)
    column = first.get("col")
    missing = _MISSING.search(description)
    if missing:
        side = "right" if missing.group(1) == "expression" else "left"
        operator = _OPERATORS.get(missing.group(2), missing.group(2).upper())
        problem = f"{operator} needs a value on its {side}"
    elif description.startswith("Expecting )"):
        problem = "a parenthesis is opened but not closed"
    elif description.startswith("Error tokenizing") or "Error tokenizing" in str(exc):
        if text.count("'") % 2:
            problem = "a quoted string ('...') is not closed"
        elif text.count('"') % 2:
            problem = 'a quoted name ("...") is not closed'
        else:
            problem = "it holds text SQL cannot read"
    elif "Failed to parse" in description:
        problem = "it is not one condition such as \"status = 'active'\""
    else:
        highlight = first.get("highlight")
        problem = f"unexpected {highlight!r}" if highlight else "it is not valid SQL"
    where = f" (at column {column})" if isinstance(column, int) and missing is None else ""
    return ShapeDefinitionError(f"the where clause {text!r} does not parse: {problem}{where}")
