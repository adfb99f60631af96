"""Options and output helpers shared by the `replica` commands."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import click

from replica import logs
from replica.settings import default_db

F = TypeVar("F", bound=Callable[..., Any])


def db_option(fn: F) -> F:
    """`--db PATH`, defaulting to `REPLICA_DB`, then `./replica.db`."""
    return click.option(
        "--db",
        "db_path",
        default=default_db,
        show_default="REPLICA_DB or ./replica.db",
        metavar="PATH",
        help="The replica database file.",
    )(fn)


def _configure_logging(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    # Flags given before the command name (`replica --debug sync`) count too.
    state = ctx.ensure_object(dict)
    state[param.name] = bool(value) or state.get(param.name, False)
    seen = state.setdefault("_seen", set())
    seen.add(param.name)
    if {"debug", "json_logs"} <= seen:
        logs.configure(debug=state["debug"], json_lines=state["json_logs"])
    return value


def logging_options(fn: F) -> F:
    """`--debug` and `--json-logs` (also accepted before the command name)."""
    fn = click.option(
        "--json-logs",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_configure_logging,
        help="Write logs as JSON lines.",
    )(fn)
    return click.option(
        "--debug",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_configure_logging,
        help="Verbose logs (each request, tokens redacted) and tracebacks on errors.",
    )(fn)


def render_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Rows as an aligned text table with a header."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def render_json(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Rows as a JSON array of objects."""
    return json.dumps(
        [dict(zip(columns, row, strict=True)) for row in rows],
        indent=2,
        default=str,
        ensure_ascii=False,
    )
