"""Typed expressions of the where compiler: columns, constants, arrays, casts, arithmetic
and text functions, with Postgres' rules for typing string literals and parameters.

`where.py` builds the boolean part (logic, comparisons, IN, LIKE, ...) on top of this.
"""

from __future__ import annotations

import decimal
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from replica.devserver.pgtypes import PgType, decode_value, encode_value, parse_array, parse_type

Row = Mapping[str, Any]
Fn = Callable[[Row], Any]

#: Type of string literals and `$n` parameters until context gives them one (as in Postgres).
UNKNOWN = PgType("unknown")
BOOL = PgType("bool")
TEXT = PgType("text")
INT = PgType("int4")
NUMERIC = PgType("numeric")
NUMERIC_RANK = {"int": 0, "numeric": 1, "float": 2}


class WhereError(ValueError):
    """The where clause cannot be evaluated; `str(err)` is the message for the client."""


@dataclass(frozen=True)
class Expr:
    """A compiled expression: its type and `fn(row) -> value` (None is SQL NULL)."""

    type: PgType
    fn: Fn
    #: For constants: the value (already typed unless `type` is UNKNOWN, then the raw text).
    const: Any = None
    is_const: bool = False
    #: For column references: the stored text form, for comparisons that need no parsing.
    raw: Fn | None = None


def const(pg_type: PgType, value: Any) -> Expr:
    return Expr(pg_type, lambda _row: value, value, True)


class ValueCompiler:
    """Compiles value expressions; subclasses add the boolean ones (`_<NodeClass>` methods)."""

    def __init__(self, columns: Mapping[str, PgType], params: Mapping[str, str]) -> None:
        self.columns = columns
        self.params = params
        self.used: set[str] = set()

    # -- helpers ------------------------------------------------------------------------

    def coerce(self, e: Expr, target: PgType) -> Expr:
        """Give an UNKNOWN constant the type `target` (Postgres' literal resolution)."""
        if e.type != UNKNOWN:
            return e
        if not e.is_const:
            raise WhereError(f"could not determine the type of an expression of {target}")
        if e.const is None:
            return const(target, None)
        try:
            return const(target, decode_value(e.const, target))
        except (ValueError, decimal.InvalidOperation, IndexError, AssertionError):
            raise WhereError(f'invalid input syntax for type {target}: "{e.const}"') from None

    def unify(self, a: Expr, b: Expr, op: str) -> tuple[Expr, Expr]:
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
        if ka == kb or (ka in NUMERIC_RANK and kb in NUMERIC_RANK):
            return a, b
        if {ka, kb} == {"timestamp", "timestamptz"}:
            return a, b
        if {ka, kb} <= {"timestamp", "timestamptz", "date"}:
            return a, b
        raise WhereError(f"operator does not exist: {a.type} {op} {b.type}")

    # -- dispatch -----------------------------------------------------------------------

    def compile(self, node: exp.Expr) -> Expr:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise WhereError(f"unsupported expression in where clause: {node.sql('postgres')}")
        return method(node)

    def _Paren(self, node: exp.Paren) -> Expr:
        return self.compile(node.this)

    def _Column(self, node: exp.Column) -> Expr:
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
            return Expr(pg_type, raw, raw=raw)

        def read(row: Row) -> Any:
            return decode_value(row.get(name), pg_type)

        return Expr(pg_type, read, raw=raw)

    def _Literal(self, node: exp.Literal) -> Expr:
        if node.is_string:
            return const(UNKNOWN, node.this)
        text = node.this
        if re.fullmatch(r"\d+", text):
            return const(INT if int(text) < 2**31 else PgType("int8"), int(text))
        try:
            return const(NUMERIC, decimal.Decimal(text))
        except decimal.InvalidOperation:
            raise WhereError(f"invalid number {text}") from None

    def _Boolean(self, node: exp.Boolean) -> Expr:
        return const(BOOL, bool(node.this))

    def _Null(self, node: exp.Null) -> Expr:
        return const(UNKNOWN, None)

    def _Parameter(self, node: exp.Parameter) -> Expr:
        key = node.this.name if isinstance(node.this, exp.Expr) else str(node.this)
        if key not in self.params:
            raise WhereError(f"parameter ${key} was not provided")
        return const(UNKNOWN, self.params[key])

    def _Placeholder(self, node: exp.Placeholder) -> Expr:
        return self._Parameter(exp.Parameter(this=exp.Literal.number(node.name or "0")))

    # -- arrays -------------------------------------------------------------------------

    def _Array(self, node: exp.Array) -> Expr:
        items = [self.compile(e) for e in node.expressions]
        typed = next((i.type for i in items if i.type != UNKNOWN), TEXT)
        items = [self.coerce(i, typed) for i in items]
        if any(i.type.kind != typed.kind for i in items):
            raise WhereError("ARRAY elements must all have the same type")
        result_type = PgType(typed.name, typed.dims + 1)
        if all(i.is_const for i in items):
            return const(result_type, [i.const for i in items])
        fns = [i.fn for i in items]
        return Expr(result_type, lambda row: [f(row) for f in fns])

    def _array_op(self, node: exp.Binary, symbol: str, test: Callable[[list, list], bool]) -> Expr:
        a, b = self.compile(node.this), self.compile(node.expression)
        a, b = self.unify(a, b, symbol)
        if not a.type.dims:
            raise WhereError(f"operator does not exist: {a.type} {symbol} {b.type}")
        if a.raw is not None and a.type.kind == "text" and a.type.dims == 1 and b.is_const:
            return Expr(BOOL, _text_array_vsconst(a.raw, list(flatten(b.const or [])), test))
        fa, fb = a.fn, b.fn

        def fn(row: Row) -> bool | None:
            x, y = fa(row), fb(row)
            if x is None or y is None:
                return None
            return test(list(flatten(x)), list(flatten(y)))

        return Expr(BOOL, fn)

    def _ArrayContainsAll(self, node: exp.Binary) -> Expr:
        return self._array_op(node, "@>", lambda x, y: all(i in x for i in y if i is not None))

    def _ArrayContainedBy(self, node: exp.Binary) -> Expr:
        return self._array_op(node, "<@", lambda x, y: all(i in y for i in x if i is not None))

    def _ArrayContains(self, node: exp.Binary) -> Expr:
        return self._ArrayContainsAll(node)

    def _ArrayOverlaps(self, node: exp.Binary) -> Expr:
        return self._array_op(node, "&&", lambda x, y: any(i in y for i in x if i is not None))

    # -- values -------------------------------------------------------------------------

    def _Cast(self, node: exp.Cast) -> Expr:
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

        return Expr(target, fn)

    def _arith(self, node: exp.Binary, op: Callable[[Any, Any], Any], symbol: str) -> Expr:
        a, b = self.compile(node.this), self.compile(node.expression)
        if a.type == UNKNOWN:
            a = self.coerce(a, b.type if b.type != UNKNOWN else NUMERIC)
        if b.type == UNKNOWN:
            b = self.coerce(b, a.type)
        if a.type.kind not in NUMERIC_RANK or b.type.kind not in NUMERIC_RANK:
            raise WhereError(f"operator does not exist: {a.type} {symbol} {b.type}")
        result = max(a.type, b.type, key=lambda t: NUMERIC_RANK[t.kind])
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

        return Expr(result, fn)

    def _Add(self, node: exp.Binary) -> Expr:
        return self._arith(node, operator.add, "+")

    def _Sub(self, node: exp.Binary) -> Expr:
        return self._arith(node, operator.sub, "-")

    def _Mul(self, node: exp.Binary) -> Expr:
        return self._arith(node, operator.mul, "*")

    def _Div(self, node: exp.Binary) -> Expr:
        return self._arith(node, operator.truediv, "/")

    def _Mod(self, node: exp.Binary) -> Expr:
        return self._arith(node, operator.mod, "%")

    def _Neg(self, node: exp.Neg) -> Expr:
        inner = self.coerce(self.compile(node.this), NUMERIC)
        if inner.type.kind not in NUMERIC_RANK:
            raise WhereError(f"operator does not exist: - {inner.type}")
        fi = inner.fn
        return Expr(inner.type, lambda row: None if (v := fi(row)) is None else -v)

    def _DPipe(self, node: exp.Binary) -> Expr:
        a = self.coerce(self.compile(node.this), TEXT)
        b = self.coerce(self.compile(node.expression), TEXT)
        if a.type.kind != "text" or b.type.kind != "text" or a.type.dims or b.type.dims:
            raise WhereError(f"operator does not exist: {a.type} || {b.type}")
        fa, fb = a.fn, b.fn

        def fn(row: Row) -> str | None:
            x, y = fa(row), fb(row)
            return None if x is None or y is None else x + y

        return Expr(TEXT, fn)

    def _text_function(self, node: exp.Func, convert: Callable[[str], Any], out: PgType) -> Expr:
        inner = self.coerce(self.compile(node.this), TEXT)
        if inner.type.kind != "text" or inner.type.dims:
            raise WhereError(f"function {node.sql_name().lower()}({inner.type}) does not exist")
        fi = inner.fn
        return Expr(out, lambda row: None if (v := fi(row)) is None else convert(v))

    def _Lower(self, node: exp.Lower) -> Expr:
        return self._text_function(node, str.lower, TEXT)

    def _Upper(self, node: exp.Upper) -> Expr:
        return self._text_function(node, str.upper, TEXT)

    def _Length(self, node: exp.Length) -> Expr:
        return self._text_function(node, len, INT)

    def _Coalesce(self, node: exp.Coalesce) -> Expr:
        items = [self.compile(node.this), *(self.compile(e) for e in node.expressions)]
        typed = next((i.type for i in items if i.type != UNKNOWN), TEXT)
        items = [self.unify(Expr(typed, lambda _r: None), i, "COALESCE")[1] for i in items]
        fns = [i.fn for i in items]

        def fn(row: Row) -> Any:
            for f in fns:
                v = f(row)
                if v is not None:
                    return v
            return None

        return Expr(typed, fn)


def _text_array_vsconst(raw: Fn, const: list[Any], test: Callable[[list, list], bool]) -> Fn:
    """A text[] column against a constant array, splitting simple literals without a parser.

    `{user:1234,org:acme}` (no quotes, no nesting) is by far the common form of `runTags`.
    """

    def fn(row: Row) -> bool | None:
        text = raw(row)
        if text is None:
            return None
        if '"' in text or "\\" in text or text.count("{") > 1:
            items = list(flatten(parse_array(text)))
        else:
            inner = text[1:-1]
            items = [None if i.upper() == "NULL" else i for i in inner.split(",")] if inner else []
        return test(items, const)

    return fn


def flatten(items: Any) -> Any:
    for i in items:
        if isinstance(i, list):
            yield from flatten(i)
        else:
            yield i
