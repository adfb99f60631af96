"""Shape `where` clauses: Postgres SQL parsed with sqlglot, compiled to a Python predicate.

Only an allow-list of node types is compiled (comparisons, boolean logic, IS/IN/BETWEEN,
LIKE/ILIKE, array operators, ANY, casts, arithmetic, `||` and a few functions); anything
else is refused with a `WhereError` that the HTTP layer turns into Electric's 400
`{"message":"Invalid request","errors":{"where":[...]}}`. Rows are mappings of column name
to Postgres text form; evaluation follows SQL's three-valued logic (NULL is `None`).
"""

from __future__ import annotations

import decimal
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp

from replica.devserver.pgtypes import (
    PgType,
    decode_value,
    encode_value,
    format_timestamp,
    parse_array,
    parse_type,
)

Row = Mapping[str, Any]
Fn = Callable[[Row], Any]

#: Type of string literals and `$n` parameters until context gives them one (as in Postgres).
UNKNOWN = PgType("unknown")
BOOL = PgType("bool")
TEXT = PgType("text")
INT = PgType("int4")
NUMERIC = PgType("numeric")


class WhereError(ValueError):
    """The where clause cannot be evaluated; `str(err)` is the message for the client."""


@dataclass(frozen=True)
class _Expr:
    type: PgType
    fn: Fn
    #: For constants: the value (already typed unless `type` is UNKNOWN, then the raw text).
    const: Any = None
    is_const: bool = False
    #: For column references: the stored text form, for comparisons that need no parsing.
    raw: Fn | None = None


def _const(pg_type: PgType, value: Any) -> _Expr:
    return _Expr(pg_type, lambda _row: value, value, True)


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


_NUMERIC_RANK = {"int": 0, "numeric": 1, "float": 2}
_COMPARE = {
    exp.EQ: operator.eq,
    exp.NEQ: operator.ne,
    exp.GT: operator.gt,
    exp.GTE: operator.ge,
    exp.LT: operator.lt,
    exp.LTE: operator.le,
}
_SYMBOL = {exp.EQ: "=", exp.NEQ: "<>", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<="}


class _Compiler:
    def __init__(self, columns: Mapping[str, PgType], params: Mapping[str, str]) -> None:
        self.columns = columns
        self.params = params
        self.used: set[str] = set()

    # -- helpers ------------------------------------------------------------------------

    def coerce(self, e: _Expr, target: PgType) -> _Expr:
        """Give an UNKNOWN constant the type `target` (Postgres' literal resolution)."""
        if e.type != UNKNOWN:
            return e
        if not e.is_const:
            raise WhereError(f"could not determine the type of an expression of {target}")
        if e.const is None:
            return _const(target, None)
        try:
            return _const(target, decode_value(e.const, target))
        except (ValueError, decimal.InvalidOperation, IndexError, AssertionError):
            raise WhereError(f'invalid input syntax for type {target}: "{e.const}"') from None

    def unify(self, a: _Expr, b: _Expr, op: str) -> tuple[_Expr, _Expr]:
        """Make both sides comparable, or refuse like Postgres' operator resolution."""
        if a.type == UNKNOWN and b.type == UNKNOWN:
            return self.coerce(a, TEXT), self.coerce(b, TEXT)
        if a.type == UNKNOWN:
            return self.coerce(a, b.type), b
        if b.type == UNKNOWN:
            return a, self.coerce(b, a.type)
        ka, kb = a.type.kind, b.type.kind
        if a.type.dims != b.type.dims:
            raise WhereError(f"operator does not exist: {a.type} {op} {b.type}")
        if ka == kb or (ka in _NUMERIC_RANK and kb in _NUMERIC_RANK):
            return a, b
        if {ka, kb} == {"timestamp", "timestamptz"}:
            return a, b
        if {ka, kb} <= {"timestamp", "timestamptz", "date"}:
            return a, b
        raise WhereError(f"operator does not exist: {a.type} {op} {b.type}")

    # -- dispatch -----------------------------------------------------------------------

    def compile(self, node: exp.Expr) -> _Expr:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise WhereError(f"unsupported expression in where clause: {node.sql('postgres')}")
        return method(node)

    def _Paren(self, node: exp.Paren) -> _Expr:
        return self.compile(node.this)

    def _Column(self, node: exp.Column) -> _Expr:
        if node.table:
            raise WhereError(f"unknown reference {node.sql('postgres')}")
        ident = node.this
        if not isinstance(ident, exp.Identifier):
            raise WhereError(f"unsupported expression in where clause: {node.sql('postgres')}")
        name = ident.this if ident.quoted else ident.this.lower()
        if name not in self.columns:
            raise WhereError(f"unknown reference {name}")
        self.used.add(name)
        pg_type = self.columns[name]

        def raw(row: Row) -> Any:
            return row.get(name)

        if pg_type.kind == "text" and not pg_type.dims:
            return _Expr(pg_type, raw, raw=raw)

        def read(row: Row) -> Any:
            return decode_value(row.get(name), pg_type)

        return _Expr(pg_type, read, raw=raw)

    def _Literal(self, node: exp.Literal) -> _Expr:
        if node.is_string:
            return _const(UNKNOWN, node.this)
        text = node.this
        if re.fullmatch(r"\d+", text):
            return _const(INT if int(text) < 2**31 else PgType("int8"), int(text))
        try:
            return _const(NUMERIC, decimal.Decimal(text))
        except decimal.InvalidOperation:
            raise WhereError(f"invalid number {text}") from None

    def _Boolean(self, node: exp.Boolean) -> _Expr:
        return _const(BOOL, bool(node.this))

    def _Null(self, node: exp.Null) -> _Expr:
        return _const(UNKNOWN, None)

    def _Parameter(self, node: exp.Parameter) -> _Expr:
        key = node.this.name if isinstance(node.this, exp.Expr) else str(node.this)
        if key not in self.params:
            raise WhereError(f"parameter ${key} was not provided")
        return _const(UNKNOWN, self.params[key])

    def _Placeholder(self, node: exp.Placeholder) -> _Expr:
        return self._Parameter(exp.Parameter(this=exp.Literal.number(node.name or "0")))

    # -- boolean logic ------------------------------------------------------------------

    def _bool_operand(self, node: exp.Expr) -> Fn:
        e = self.compile(node)
        e = self.coerce(e, BOOL)
        if e.type != BOOL:
            raise WhereError(f"argument of boolean operator must be type boolean, not {e.type}")
        return e.fn

    def _And(self, node: exp.And) -> _Expr:
        left, right = self._bool_operand(node.this), self._bool_operand(node.expression)

        def fn(row: Row) -> bool | None:
            a = left(row)
            if a is False:
                return False
            b = right(row)
            if b is False:
                return False
            return None if a is None or b is None else True

        return _Expr(BOOL, fn)

    def _Or(self, node: exp.Or) -> _Expr:
        left, right = self._bool_operand(node.this), self._bool_operand(node.expression)

        def fn(row: Row) -> bool | None:
            a = left(row)
            if a is True:
                return True
            b = right(row)
            if b is True:
                return True
            return None if a is None or b is None else False

        return _Expr(BOOL, fn)

    def _Not(self, node: exp.Not) -> _Expr:
        inner = self._bool_operand(node.this)

        def fn(row: Row) -> bool | None:
            v = inner(row)
            return None if v is None else not v

        return _Expr(BOOL, fn)

    def _Is(self, node: exp.Is) -> _Expr:
        left = self.compile(node.this)
        right = node.expression
        negate = bool(node.args.get("negate"))
        if isinstance(right, exp.Null):

            def fn(row: Row) -> bool:
                return (left.fn(row) is None) != negate

            return _Expr(BOOL, fn)
        if isinstance(right, exp.Boolean):
            left = self.coerce(left, BOOL)
            if left.type != BOOL:
                raise WhereError(f"argument of IS {right.sql()} must be type boolean")
            want = bool(right.this)

            def fn_bool(row: Row) -> bool:
                return (left.fn(row) is want) != negate

            return _Expr(BOOL, fn_bool)
        raise WhereError(f"unsupported expression in where clause: {node.sql('postgres')}")

    # -- comparisons --------------------------------------------------------------------

    def _compare(self, node: exp.Binary) -> _Expr:
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
            return _Expr(BOOL, fast)
        fa, fb = a.fn, b.fn

        def fn(row: Row) -> bool | None:
            x, y = fa(row), fb(row)
            if x is None or y is None:
                return None
            return op(x, y)

        return _Expr(BOOL, fn)

    _EQ = _NEQ = _GT = _GTE = _LT = _LTE = _compare

    def _quantified(self, node: exp.Binary, op: Callable, symbol: str, every: bool) -> _Expr:
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
        elem = _const(PgType(arr.type.name), None)
        left, _ = self.unify(left, _Expr(elem.type, elem.fn), symbol)
        fl, fa = left.fn, arr.fn

        def fn(row: Row) -> bool | None:
            x, items = fl(row), fa(row)
            if x is None or items is None:
                return None
            results = [None if i is None else op(x, i) for i in _flatten(items)]
            if every:
                if False in results:
                    return False
                return None if None in results else True
            if True in results:
                return True
            return None if None in results else False

        return _Expr(BOOL, fn)

    def _NullSafeEQ(self, node: exp.Binary, negate: bool = False) -> _Expr:
        a, b = self.unify(self.compile(node.this), self.compile(node.expression), "=")
        fa, fb = a.fn, b.fn

        def fn(row: Row) -> bool:
            x, y = fa(row), fb(row)
            same = (x is None and y is None) or (x is not None and y is not None and x == y)
            return same != negate

        return _Expr(BOOL, fn)

    def _NullSafeNEQ(self, node: exp.Binary) -> _Expr:
        return self._NullSafeEQ(node, negate=True)

    def _In(self, node: exp.In) -> _Expr:
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

        return _Expr(BOOL, fn)

    def _Between(self, node: exp.Between) -> _Expr:
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

        return _Expr(BOOL, fn)

    def _like(self, node: exp.Binary, insensitive: bool) -> _Expr:
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

        return _Expr(BOOL, fn)

    def _Like(self, node: exp.Like) -> _Expr:
        return self._like(node, insensitive=False)

    def _ILike(self, node: exp.ILike) -> _Expr:
        return self._like(node, insensitive=True)

    # -- arrays -------------------------------------------------------------------------

    def _Array(self, node: exp.Array) -> _Expr:
        items = [self.compile(e) for e in node.expressions]
        typed = next((i.type for i in items if i.type != UNKNOWN), TEXT)
        items = [self.coerce(i, typed) for i in items]
        if any(i.type.kind != typed.kind for i in items):
            raise WhereError("ARRAY elements must all have the same type")
        result_type = PgType(typed.name, typed.dims + 1)
        if all(i.is_const for i in items):
            return _const(result_type, [i.const for i in items])
        fns = [i.fn for i in items]
        return _Expr(result_type, lambda row: [f(row) for f in fns])

    def _array_op(self, node: exp.Binary, symbol: str, test: Callable[[list, list], bool]) -> _Expr:
        a, b = self.compile(node.this), self.compile(node.expression)
        a, b = self.unify(a, b, symbol)
        if not a.type.dims:
            raise WhereError(f"operator does not exist: {a.type} {symbol} {b.type}")
        if a.raw is not None and a.type.kind == "text" and a.type.dims == 1 and b.is_const:
            return _Expr(BOOL, _text_array_vs_const(a.raw, list(_flatten(b.const or [])), test))
        fa, fb = a.fn, b.fn

        def fn(row: Row) -> bool | None:
            x, y = fa(row), fb(row)
            if x is None or y is None:
                return None
            return test(list(_flatten(x)), list(_flatten(y)))

        return _Expr(BOOL, fn)

    def _ArrayContainsAll(self, node: exp.Binary) -> _Expr:
        return self._array_op(node, "@>", lambda x, y: all(i in x for i in y if i is not None))

    def _ArrayContainedBy(self, node: exp.Binary) -> _Expr:
        return self._array_op(node, "<@", lambda x, y: all(i in y for i in x if i is not None))

    def _ArrayContains(self, node: exp.Binary) -> _Expr:
        return self._ArrayContainsAll(node)

    def _ArrayOverlaps(self, node: exp.Binary) -> _Expr:
        return self._array_op(node, "&&", lambda x, y: any(i in y for i in x if i is not None))

    # -- values -------------------------------------------------------------------------

    def _Cast(self, node: exp.Cast) -> _Expr:
        target = parse_type(node.args["to"].sql(dialect="postgres"))
        inner = self.compile(node.this)
        if inner.type == UNKNOWN:
            return self.coerce(inner, target)
        source, fi = inner.type, inner.fn

        def fn(row: Row) -> Any:
            v = fi(row)
            if v is None:
                return None
            if source.kind == "text" and not source.dims:
                return decode_value(v, target)
            return decode_value(encode_value(v, source), target)

        return _Expr(target, fn)

    def _arith(self, node: exp.Binary, op: Callable[[Any, Any], Any], symbol: str) -> _Expr:
        a, b = self.compile(node.this), self.compile(node.expression)
        if a.type == UNKNOWN:
            a = self.coerce(a, b.type if b.type != UNKNOWN else NUMERIC)
        if b.type == UNKNOWN:
            b = self.coerce(b, a.type)
        if a.type.kind not in _NUMERIC_RANK or b.type.kind not in _NUMERIC_RANK:
            raise WhereError(f"operator does not exist: {a.type} {symbol} {b.type}")
        result = max(a.type, b.type, key=lambda t: _NUMERIC_RANK[t.kind])
        fa, fb = a.fn, b.fn
        integral = result.kind == "int"

        def fn(row: Row) -> Any:
            x, y = fa(row), fb(row)
            if x is None or y is None:
                return None
            if isinstance(x, decimal.Decimal) and isinstance(y, float):
                x = float(x)
            elif isinstance(y, decimal.Decimal) and isinstance(x, float):
                y = float(y)
            if symbol in ("/", "%") and y == 0:
                return None  # Postgres raises; a row that errors simply does not match
            if integral and symbol == "/":
                q = abs(x) // abs(y)
                return q if (x >= 0) == (y >= 0) else -q
            if integral and symbol == "%":
                r = abs(x) % abs(y)
                return r if x >= 0 else -r
            return op(x, y)

        return _Expr(result, fn)

    def _Add(self, node: exp.Binary) -> _Expr:
        return self._arith(node, operator.add, "+")

    def _Sub(self, node: exp.Binary) -> _Expr:
        return self._arith(node, operator.sub, "-")

    def _Mul(self, node: exp.Binary) -> _Expr:
        return self._arith(node, operator.mul, "*")

    def _Div(self, node: exp.Binary) -> _Expr:
        return self._arith(node, operator.truediv, "/")

    def _Mod(self, node: exp.Binary) -> _Expr:
        return self._arith(node, operator.mod, "%")

    def _Neg(self, node: exp.Neg) -> _Expr:
        inner = self.coerce(self.compile(node.this), NUMERIC)
        if inner.type.kind not in _NUMERIC_RANK:
            raise WhereError(f"operator does not exist: - {inner.type}")
        fi = inner.fn
        return _Expr(inner.type, lambda row: None if (v := fi(row)) is None else -v)

    def _DPipe(self, node: exp.Binary) -> _Expr:
        a = self.coerce(self.compile(node.this), TEXT)
        b = self.coerce(self.compile(node.expression), TEXT)
        if a.type.kind != "text" or b.type.kind != "text" or a.type.dims or b.type.dims:
            raise WhereError(f"operator does not exist: {a.type} || {b.type}")
        fa, fb = a.fn, b.fn

        def fn(row: Row) -> str | None:
            x, y = fa(row), fb(row)
            return None if x is None or y is None else x + y

        return _Expr(TEXT, fn)

    def _text_function(self, node: exp.Func, convert: Callable[[str], Any], out: PgType) -> _Expr:
        inner = self.coerce(self.compile(node.this), TEXT)
        if inner.type.kind != "text" or inner.type.dims:
            raise WhereError(f"function {node.sql_name().lower()}({inner.type}) does not exist")
        fi = inner.fn
        return _Expr(out, lambda row: None if (v := fi(row)) is None else convert(v))

    def _Lower(self, node: exp.Lower) -> _Expr:
        return self._text_function(node, str.lower, TEXT)

    def _Upper(self, node: exp.Upper) -> _Expr:
        return self._text_function(node, str.upper, TEXT)

    def _Length(self, node: exp.Length) -> _Expr:
        return self._text_function(node, len, INT)

    def _Coalesce(self, node: exp.Coalesce) -> _Expr:
        items = [self.compile(node.this), *(self.compile(e) for e in node.expressions)]
        typed = next((i.type for i in items if i.type != UNKNOWN), TEXT)
        items = [self.unify(_Expr(typed, lambda _r: None), i, "COALESCE")[1] for i in items]
        fns = [i.fn for i in items]

        def fn(row: Row) -> Any:
            for f in fns:
                v = f(row)
                if v is not None:
                    return v
            return None

        return _Expr(typed, fn)


_FLIPPED = {
    "=": operator.eq,
    "<>": operator.ne,
    ">": operator.lt,
    ">=": operator.le,
    "<": operator.gt,
    "<=": operator.ge,
}


def _timestamp_text_compare(column: _Expr, const: _Expr, op: Callable) -> Fn | None:
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


def _text_array_vs_const(raw: Fn, const: list[Any], test: Callable[[list, list], bool]) -> Fn:
    """A text[] column against a constant array, splitting simple literals without a parser.

    `{user:1234,org:acme}` (no quotes, no nesting) is by far the common form of `runTags`.
    """

    def fn(row: Row) -> bool | None:
        text = raw(row)
        if text is None:
            return None
        if '"' in text or "\\" in text or text.count("{") > 1:
            items = list(_flatten(parse_array(text)))
        else:
            inner = text[1:-1]
            items = [None if i.upper() == "NULL" else i for i in inner.split(",")] if inner else []
        return test(items, const)

    return fn


def _flatten(items: Any) -> Any:
    for i in items:
        if isinstance(i, list):
            yield from _flatten(i)
        else:
            yield i


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
