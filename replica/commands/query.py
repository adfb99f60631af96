"""`replica query`: one read-only SQL statement, printed as a table, JSON, CSV or TSV.

The output flags are sqlite-utils' own (`--csv`, `--tsv`, `--nl`, `--json-cols`, `--fmt`), so
its users find them where they expect them; `--fmt` draws with tabulate, imported only then.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from typing import Any

import click

from replica.commands.common import db_option, logging_options, render_json, render_table
from replica.store.readonly import open_readonly, run_query

#: A few of tabulate's table styles, for `--help`; `--fmt` takes any of them.
STYLES_SHOWN = "simple, plain, github, grid, psql, rounded_outline, html, latex"

Row = Sequence[Any]


def _check_style(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    import tabulate  # ~0.1 s of imports: only when a table style is asked for

    if value not in tabulate.tabulate_formats:
        raise click.BadParameter(
            f"{value!r} is not a table style; use one of: {', '.join(tabulate.tabulate_formats)}",
            ctx=ctx,
            param=param,
        )
    return value


@click.command()
@click.argument("sql")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of objects.")
@click.option("--nl", "as_nl", is_flag=True, help="Print one JSON object per line.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV with a header line.")
@click.option("--tsv", "as_tsv", is_flag=True, help="Print TSV with a header line.")
@click.option(
    "--json-cols",
    is_flag=True,
    help="With --json or --nl: print text that holds a JSON object or array as JSON, not as "
    "an escaped string (sqlite-utils' rule: any such value, in any column).",
)
@click.option(
    "--fmt",
    "style",
    metavar="STYLE",
    callback=_check_style,
    help=f"Print a table in a tabulate style, as sqlite-utils does: {STYLES_SHOWN}, ...",
)
@click.option(
    "-p",
    "--param",
    "params",
    type=(str, str),
    multiple=True,
    metavar="NAME VALUE",
    help="A value for :NAME in the query, as sqlite-utils takes them. Repeatable.",
)
@logging_options
def query(
    sql: str,
    db_path: str,
    params: tuple[tuple[str, str], ...],
    as_json: bool,
    as_nl: bool,
    as_csv: bool,
    as_tsv: bool,
    json_cols: bool,
    style: str | None,
) -> None:
    """Run a read-only SQL query against the replica and print the result.

    Without an output flag the result is a plain table (long values cut at 80 characters).
    NULL is an empty cell in tables, CSV and TSV, and null in JSON; a BLOB is printed as hex.
    A statement that would write is refused.

    \b
    Examples:
      replica query "select status, count(*) from runs group by status"
      replica query "select id, tags, payload from runs" --nl --json-cols
      replica query "select id, status from runs" --fmt github
      replica query "select * from runs where status = :status" -p status FAILED
      replica query "pragma table_info(runs)"
    """
    chosen = [
        flag
        for flag, on in (
            ("--json", as_json),
            ("--nl", as_nl),
            ("--csv", as_csv),
            ("--tsv", as_tsv),
            ("--fmt", style is not None),
        )
        if on
    ]
    if len(chosen) > 1:
        raise click.UsageError(
            f"choose one of --json, --nl, --csv, --tsv and --fmt (got {' and '.join(chosen)})"
        )
    if json_cols and not (as_json or as_nl):
        raise click.UsageError("--json-cols applies to JSON output: use it with --json or --nl")
    conn = open_readonly(db_path)
    try:
        columns, rows = run_query(conn, sql, dict(params))
    finally:
        conn.close()
    if not columns:
        return
    if as_json:
        click.echo(render_json(columns, [json_values(row, json_cols) for row in rows]))
    elif as_nl:
        for line in render_nl(columns, rows, json_cols=json_cols):
            click.echo(line)
    elif as_csv or as_tsv:
        click.echo(render_delimited(columns, rows, tabs=as_tsv))
    elif style is not None:
        click.echo(render_style(columns, rows, style))
    else:
        click.echo(render_table(columns, [[_plain(v) for v in row] for row in rows]))


def maybe_json(value: Any) -> Any:
    """The value a `--json-cols` output shows: sqlite-utils' rule, so both tools agree.

    Text whose first non-blank character is `{` or `[` and that parses as JSON becomes that
    object or array; anything else (JSON strings and numbers included) stays as it is.
    """
    if not isinstance(value, str):
        return value
    stripped = value.strip()
    if not stripped.startswith(("{", "[")):
        return value
    try:
        return json.loads(stripped)
    except ValueError:
        return value


def json_values(row: Row, json_cols: bool) -> list[Any]:
    """A row's values as JSON shows them: BLOBs as hex, JSON text decoded if asked."""
    values = [_plain(v) for v in row]
    return [maybe_json(v) for v in values] if json_cols else values


def render_nl(columns: Sequence[str], rows: Sequence[Row], *, json_cols: bool) -> Iterator[str]:
    """Newline-delimited JSON: one object per row, laid out as sqlite-utils' `--nl`."""
    for row in rows:
        values = json_values(row, json_cols)
        yield json.dumps(dict(zip(columns, values, strict=True)), ensure_ascii=False, default=str)


def render_delimited(columns: Sequence[str], rows: Sequence[Row], *, tabs: bool) -> str:
    """CSV (or TSV) with a header line; fields holding the separator, quotes or line breaks
    are quoted."""
    out = io.StringIO()
    writer = csv.writer(out, dialect="excel-tab" if tabs else "excel", lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_plain(v) for v in row] for row in rows)
    return out.getvalue().removesuffix("\n")


def render_style(columns: Sequence[str], rows: Sequence[Row], style: str) -> str:
    """A table drawn by tabulate in one of its styles.

    Text is printed as it is stored: tabulate would otherwise read "007" as the number 7
    and round floats to six digits.
    """
    import tabulate

    cells = [[_plain(v) for v in row] for row in rows]
    text_columns = [i for i in range(len(columns)) if any(isinstance(r[i], str) for r in cells)]
    return tabulate.tabulate(
        cells,
        headers=list(columns),
        tablefmt=style,
        floatfmt="",
        disable_numparse=text_columns or False,
    )


def _plain(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else value


__all__ = ["query"]
