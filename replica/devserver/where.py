"""Shape `where` clauses: Postgres SQL parsed with sqlglot, compiled to a Python predicate.

Only an allow-list of node types is compiled (comparisons, boolean logic, IS/IN/BETWEEN,
LIKE/ILIKE, array operators, ANY, casts, arithmetic, `||` and a few functions); anything
else is refused with a `WhereError` that the HTTP layer turns into Electric's 400
`{"message":"Invalid request","errors":{"where":[...]}}`. Rows are mappings of column name
to Postgres text form; evaluation follows SQL's three-valued logic (NULL is `None`).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp

from replica.devserver.pgtypes import PgType, format_timestamp
from replica.devserver.where_values import (
    BOOL,
    TEXT,
    UNKNOWN,
    Expr,
    Fn,
    Row,
    ValueCompiler,
    WhereError,
    const,
    flatten,
)

__all__ = ["Where", "WhereError", "compile_where"]


@dataclass(frozen=True)
class Where:
    """A compiled where clause: `matches(row)` is True only when the clause is TRUE.

    `equalities` holds `column = constant` conjuncts of the top-level AND chain (column ->
    the constant as a Python value), so callers can route rows by key without evaluating.
    """

    sql: str
    columns: frozenset[str]
    predicate: Fn
    equalities: Mapping[str, Any] = field(default_factory=dict)

    def matches(self, row: Row) -> bool:
        return self.predicate(row) is True


def compile_where(
    sql: str, columns: Mapping[str, PgType], params: Mapping[str, str] | None = None
) -> Where:
    """Compile `sql` against a table's `columns`; `params` maps "1", "2", ... to `$n` values."""
    try:
        tree = exp.condition(sql, dialect="postgres")
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError) as exc:
        raise WhereError(f"Invalid syntax: {_first_line(exc)}") from None
    compiler = _Compiler(columns, params or {})
    expr = compiler.compile(tree)
    if expr.type == UNKNOWN and expr.is_const:
        expr = compiler.coerce(expr, BOOL)
    if expr.type != BOOL:
        raise WhereError("WHERE clause must return a boolean")
    return Where(
        tree.sql(dialect="postgres"),
        frozenset(compiler.used),
        expr.fn,
        _top_level_equalities(tree, compiler),
    )


def _top_level_equalities(tree: exp.Expr, compiler: _Compiler) -> dict[str, Any]:
    found: dict[str, Any] = {}
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, exp.Paren):
            pending.append(node.this)
        elif isinstance(node, exp.And):
            pending.extend((node.this, node.expression))
        elif isinstance(node, exp.EQ):
            column, value = node.this, node.expression
            if isinstance(value, exp.Column):
                column, value = value, column
            if isinstance(column, exp.Column) and isinstance(value, (exp.Literal, exp.Parameter)):
                col = compiler.compile(column)
                const = compiler.coerce(compiler.compile(value), col.type)
                if const.is_const and const.const is not None:
                    name = column.this.this if column.this.quoted else column.this.this.lower()
                    found[name] = const.const
    return found


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _type_name(t: PgType) -> str:
    return str(t)


NUMERIC_RANK = {"int": 0, "numeric": 1, "float": 2}
_COMPARE = {
    exp.EQ: operator.eq,
    exp.NEQ: operator.ne,
    exp.GT: operator.gt,
    exp.GTE: operator.ge,
    exp.LT: operator.lt,
    exp.LTE: operator.le,
}
_SYMBOL = {exp.EQ: "=", exp.NEQ: "<>", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<="}


class _Compiler(ValueCompiler):
    """Adds boolean logic, comparisons, IS, IN, BETWEEN and LIKE."""

    # -- boolean logic ------------------------------------------------------------------

    def _bool_operand(self, node: exp.Expr) -> Fn:
        e = self.compile(node)
        e = self.coerce(e, BOOL)
        if e.type != BOOL:
            raise WhereError(f"argument of boolean operator must be type boolean, not {e.type}")
        return e.fn

    def _And(self, node: exp.And) -> Expr:
        left, right = self._bool_operand(node.this), self._bool_operand(node.expression)

        def fn(row: Row) -> bool | None:
            a = left(row)
            if a is False:
                return False
            b = right(row)
            if b is False:
                return False
            return None if a is None or b is None else True

        return Expr(BOOL, fn)

    def _Or(self, node: exp.Or) -> Expr:
        left, right = self._bool_operand(node.this), self._bool_operand(node.expression)

        def fn(row: Row) -> bool | None:
            a = left(row)
            if a is True:
                return True
            b = right(row)
            if b is True:
                return True
            return None if a is None or b is None else False

        return Expr(BOOL, fn)

    def _Not(self, node: exp.Not) -> Expr:
        inner = self._bool_operand(node.this)

        def fn(row: Row) -> bool | None:
            v = inner(row)
            return None if v is None else not v

        return Expr(BOOL, fn)

    def _Is(self, node: exp.Is) -> Expr:
        left = self.compile(node.this)
        right = node.expression
        negate = bool(node.args.get("negate"))
        if isinstance(right, exp.Null):

            def fn(row: Row) -> bool:
                return (left.fn(row) is None) != negate

            return Expr(BOOL, fn)
        if isinstance(right, exp.Boolean):
            left = self.coerce(left, BOOL)
            if left.type != BOOL:
                raise WhereError(f"argument of IS {right.sql()} must be type boolean")
            want = bool(right.this)

            def fn_bool(row: Row) -> bool:
                return (left.fn(row) is want) != negate

            return Expr(BOOL, fn_bool)
        raise WhereError(f"unsupported expression in where clause: {node.sql('postgres')}")

    # -- comparisons --------------------------------------------------------------------

    def _compare(self, node: exp.Binary) -> Expr:
        op = _COMPARE[type(node)]
        symbol = _SYMBOL[type(node)]
        right_node = node.expression
        if isinstance(right_node, (exp.Any, exp.All)):
            return self._quantified(node, op, symbol, isinstance(right_node, exp.All))
        a, b = self.unify(self.compile(node.this), self.compile(right_node), symbol)
        if a.type.kind == "json" and symbol not in ("=", "<>"):
            raise WhereError(f"operator does not exist: {a.type} {symbol} {b.type}")
        fast = _timestamp_text_compare(a, b, op) or _timestamp_text_compare(b, a, _FLIPPED[symbol])
        if fast is not None:
            return Expr(BOOL, fast)
        fa, fb = a.fn, b.fn

        def fn(row: Row) -> bool | None:
            x, y = fa(row), fb(row)
            if x is None or y is None:
                return None
            return op(x, y)

        return Expr(BOOL, fn)

    _EQ = _NEQ = _GT = _GTE = _LT = _LTE = _compare

    def _quantified(self, node: exp.Binary, op: Callable, symbol: str, every: bool) -> Expr:
        inner = node.expression.this
        if isinstance(inner, exp.Paren):
            inner = inner.this
        if isinstance(inner, (exp.Select, exp.Subquery)):
            raise WhereError("subqueries are not supported in where clauses")
        left = self.compile(node.this)
        arr = self.compile(inner)
        if arr.type == UNKNOWN:
            if left.type == UNKNOWN:
                left = self.coerce(left, TEXT)
            arr = self.coerce(arr, PgType(left.type.name, 1))
        if not arr.type.dims:
            raise WhereError(f"op ANY/ALL ({symbol}) requires array on right side")
        elem = const(PgType(arr.type.name), None)
        left, _ = self.unify(left, Expr(elem.type, elem.fn), symbol)
        fl, fa = left.fn, arr.fn

        def fn(row: Row) -> bool | None:
            x, items = fl(row), fa(row)
            if x is None or items is None:
                return None
            results = [None if i is None else op(x, i) for i in flatten(items)]
            if every:
                if False in results:
                    return False
                return None if None in results else True
            if True in results:
                return True
            return None if None in results else False

        return Expr(BOOL, fn)

    def _NullSafeEQ(self, node: exp.Binary, negate: bool = False) -> Expr:
        a, b = self.unify(self.compile(node.this), self.compile(node.expression), "=")
        fa, fb = a.fn, b.fn

        def fn(row: Row) -> bool:
            x, y = fa(row), fb(row)
            same = (x is None and y is None) or (x is not None and y is not None and x == y)
            return same != negate

        return Expr(BOOL, fn)

    def _NullSafeNEQ(self, node: exp.Binary) -> Expr:
        return self._NullSafeEQ(node, negate=True)

    def _In(self, node: exp.In) -> Expr:
        if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
            raise WhereError("subqueries are not supported in where clauses")
        left = self.compile(node.this)
        items = [self.compile(e) for e in node.expressions]
        if left.type == UNKNOWN:
            typed = next((i.type for i in items if i.type != UNKNOWN), TEXT)
            left = self.coerce(left, typed)
        fns = [self.unify(left, item, "=")[1].fn for item in items]
        fl = left.fn

        def fn(row: Row) -> bool | None:
            x = fl(row)
            if x is None:
                return None
            saw_null = False
            for f in fns:
                y = f(row)
                if y is None:
                    saw_null = True
                elif x == y:
                    return True
            return None if saw_null else False

        return Expr(BOOL, fn)

    def _Between(self, node: exp.Between) -> Expr:
        value = self.compile(node.this)
        low = self.compile(node.args["low"])
        high = self.compile(node.args["high"])
        value, low = self.unify(value, low, "BETWEEN")
        value, high = self.unify(value, high, "BETWEEN")
        fv, fl, fh = value.fn, low.fn, high.fn

        def fn(row: Row) -> bool | None:
            v, lo, hi = fv(row), fl(row), fh(row)
            if v is None or lo is None or hi is None:
                return None
            return lo <= v <= hi

        return Expr(BOOL, fn)

    def _like(self, node: exp.Binary, insensitive: bool) -> Expr:
        text = self.coerce(self.compile(node.this), TEXT)
        pattern = self.coerce(self.compile(node.expression), TEXT)
        for side in (text, pattern):
            if side.type.kind != "text" or side.type.dims:
                raise WhereError(f"operator does not exist: {side.type} ~~ text")
        negate = bool(node.args.get("negate"))
        flags = re.DOTALL | (re.IGNORECASE if insensitive else 0)
        cache: dict[str, re.Pattern[str]] = {}
        ft, fp = text.fn, pattern.fn

        def fn(row: Row) -> bool | None:
            t, p = ft(row), fp(row)
            if t is None or p is None:
                return None
            rx = cache.get(p)
            if rx is None:
                rx = cache[p] = re.compile(_like_to_regex(p), flags)
            return (rx.fullmatch(t) is not None) != negate

        return Expr(BOOL, fn)

    def _Like(self, node: exp.Like) -> Expr:
        return self._like(node, insensitive=False)

    def _ILike(self, node: exp.ILike) -> Expr:
        return self._like(node, insensitive=True)


_FLIPPED = {
    "=": operator.eq,
    "<>": operator.ne,
    ">": operator.lt,
    ">=": operator.le,
    "<": operator.gt,
    "<=": operator.ge,
}


def _timestamp_text_compare(column: Expr, const: Expr, op: Callable) -> Fn | None:
    """`timestamp_column OP constant` on the stored text, which sorts like the value.

    Stored timestamps are in Postgres' canonical form (`YYYY-MM-DD HH:MM:SS[.f]`, trailing
    zeros trimmed), and that form orders lexicographically exactly as the instants do, so
    the hot `"createdAt" > '...'` of tag feeds needs no per-row parsing.
    """
    if (
        column.raw is None
        or column.type.name != "timestamp"
        or column.type.dims
        or not const.is_const
        or const.const is None
    ):
        return None
    text = format_timestamp(const.const)
    raw = column.raw

    def fn(row: Row) -> bool | None:
        value = raw(row)
        return None if value is None else op(value, text)

    return fn


def _like_to_regex(pattern: str) -> str:
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return "".join(out)
