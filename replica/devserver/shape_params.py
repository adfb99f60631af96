"""The parameters of a shape request: parsing, Electric's validation (params.ex) and the
shape definition they ask for (electric-protocol.md §1.1-§1.2)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request

from replica.devserver.identifiers import parse_columns
from replica.devserver.shapes import ShapeDefinition
from replica.devserver.tables import TableError
from replica.devserver.where import WhereError, compile_where

if TYPE_CHECKING:
    from replica.devserver.emulator import Emulator

_PARAM_KEY = re.compile(r"^params\[(.*)\]$")
_OFFSET_FORMAT = re.compile(r"^(-1|now|\d+_(\d+|inf))$")


def _truthy(value: str | None) -> bool:
    # Electric's pre-processing: anything but the literal "false" is true.
    return value is not None and value != "false"


@dataclass
class ShapeQuery:
    """The protocol parameters of one shape request (raw strings, as received)."""

    offset: str | None = None
    handle: str | None = None
    live: bool = False
    live_sse: bool = False
    cursor: str | None = None
    table: str | None = None
    where: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    params_error: str | None = None
    columns: str | None = None
    replica: str | None = None
    log: str | None = None
    secret: str | None = None
    if_none_match: str | None = None
    origin: str | None = None

    @classmethod
    def from_request(cls, request: Request) -> ShapeQuery:
        q = request.query_params
        params: dict[str, str] = {}
        for key, value in q.multi_items():
            m = _PARAM_KEY.match(key)
            if m:
                params[m.group(1)] = value
        live_sse = q.get("live_sse")
        if live_sse is None:
            live_sse = q.get("experimental_live_sse")
        return cls(
            offset=q.get("offset"),
            handle=q.get("handle"),
            live=_truthy(q.get("live")),
            live_sse=_truthy(live_sse),
            cursor=q.get("cursor"),
            table=q.get("table"),
            where=q.get("where"),
            params=params,
            params_error=("params" in q and not params and "Parameters must be a map") or None,
            columns=q.get("columns"),
            replica=q.get("replica"),
            log=q.get("log"),
            secret=q.get("secret") or q.get("api_secret"),
            if_none_match=request.headers.get("if-none-match"),
            origin=request.headers.get("origin"),
        )


def validate_query(q: ShapeQuery) -> dict[str, list[str]]:
    """Parameter errors of `params.ex` (before the table is looked at)."""
    errors: dict[str, list[str]] = {}
    if q.offset is None or q.offset == "":
        errors["offset"] = ["can't be blank"]
    elif not _OFFSET_FORMAT.match(q.offset):
        errors["offset"] = ["has invalid format"]
    initial = q.offset in ("-1", "now")
    if q.offset and "offset" not in errors and not initial and not q.handle:
        errors["handle"] = ["can't be blank when offset != -1"]
    if q.live and q.offset == "-1":
        errors["live"] = ["can't be true when offset == -1"]
    elif q.live and q.offset == "now":
        errors["live"] = ["can't be true when offset is 'now'"]
    if q.live_sse and not q.live:
        errors["live_sse"] = ["can't be true unless live is also true"]
    if q.replica is not None and q.replica not in ("default", "full"):
        errors["replica"] = ["is invalid"]
    if q.log is not None and q.log not in ("full", "changes_only"):
        errors["log"] = ["is invalid"]
    if q.params_error:
        errors["params"] = [q.params_error]
    elif q.params:
        if not all(k.isdigit() for k in q.params):
            errors["params"] = ["Parameters can only use numbers as keys"]
        elif sorted(int(k) for k in q.params) != list(range(1, len(q.params) + 1)):
            errors["params"] = ["Parameters must be numbered sequentially, starting from 1"]
    return errors


class ShapeRequestError(ValueError):
    """The query names no shape the emulator can serve: Electric's errors, field -> messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def build_definition(emu: Emulator, q: ShapeQuery) -> ShapeDefinition:
    """The shape definition a query asks for (ShapeRequestError with the reasons if none)."""
    if not q.table:
        raise ShapeRequestError({"table": ["can't be blank"]})
    try:
        table = emu.db.table(q.table)
    except TableError as exc:
        raise ShapeRequestError({"table": [str(exc)]}) from exc
    errors: dict[str, list[str]] = {}
    selected = tuple(table.columns)
    if q.columns is not None:
        try:
            names = parse_columns(q.columns)
        except ValueError as exc:
            raise ShapeRequestError({"columns": [str(exc)]}) from exc
        unknown = [n for n in names if n not in table.columns]
        missing = [k for k in table.primary_key if k not in names]
        if unknown:
            errors["columns"] = [
                "The following columns are not found on the table: " + ", ".join(unknown)
            ]
        elif missing:
            errors["columns"] = [
                "The list of columns must include all primary key columns, missing: "
                + ", ".join(missing)
            ]
        else:
            selected = tuple(c for c in table.columns if c in names)
    where = None
    params = tuple(sorted(q.params.items(), key=lambda kv: int(kv[0])))
    if q.where is not None and q.where.strip():
        try:
            where = compile_where(q.where, table.types(), dict(q.params))
        except WhereError as exc:
            errors["where"] = [str(exc)]
    elif q.params:
        params = ()
    if errors:
        raise ShapeRequestError(errors)
    return ShapeDefinition(
        table=table,
        columns=selected,
        where=where,
        params=params if where is not None else (),
        replica="full" if q.replica == "full" else "default",
        log_mode="changes_only" if q.log == "changes_only" else "full",
    )
