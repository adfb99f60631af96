"""The `replica` command line.

Errors end the program with one `Error: ...` line on stderr and no traceback: exit status 2
for usage errors, 1 for failures at run time (`--debug` shows the traceback).
"""

from __future__ import annotations

import logging
import sys
import traceback

import click

from replica import logs
from replica._version import __version__
from replica.commands.demo import demo
from replica.commands.inspect import query, status
from replica.commands.reset import reset
from replica.commands.sync import sync
from replica.commands.watch import watch
from replica.devserver.command import dev_server
from replica.errors import ReplicaError

log = logging.getLogger(__name__)


class _Group(click.Group):
    """A click group whose errors are one `Error:` line instead of a usage dump."""

    def main(self, *args, **kwargs):  # type: ignore[override]
        debug = "--debug" in sys.argv[1:]
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("Error: interrupted", err=True)
            sys.exit(130)
        except click.UsageError as exc:
            hint = ""
            if exc.ctx is not None and exc.ctx.command_path:
                hint = f" (see '{exc.ctx.command_path} --help')"
            click.echo(f"Error: {exc.format_message()}{hint}", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except ReplicaError as exc:
            if debug:
                traceback.print_exc()
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            sys.exit(130)
        except Exception as exc:  # a bug: still one line, the traceback behind --debug
            if debug:
                traceback.print_exc()
            click.echo(
                f"Error: unexpected {type(exc).__name__}: {exc} (run again with --debug for "
                "the traceback, and please report it)",
                err=True,
            )
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="replica")
@click.option("--debug", is_flag=True, help="Verbose logs and tracebacks on errors.")
@click.option("--json-logs", is_flag=True, help="Write logs as JSON lines.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, json_logs: bool) -> None:
    """Keep a live local SQLite replica of Trigger.dev runs and ElectricSQL shapes."""
    ctx.obj = {"debug": debug, "json_logs": json_logs}
    logs.configure(debug=debug, json_lines=json_logs)


cli.add_command(sync)
cli.add_command(status)
cli.add_command(query)
cli.add_command(watch)
cli.add_command(reset)
cli.add_command(demo)
cli.add_command(dev_server)


def main() -> None:
    """Entry point of the `replica` console script."""
    cli()
