"""The `replica` command line.

Errors end the program with one `Error: ...` line on stderr and no traceback: exit status 2
for usage errors, 1 for failures at run time (`--debug` shows the traceback).
"""

from __future__ import annotations

import importlib
import logging
import sys
import traceback

import click

from replica import errors, logs
from replica._version import __version__
from replica.errors import ReplicaError

#: Commands and where they live; a command's module is imported only when it runs (or
#: when `--help` lists them), so `replica status` does not pay for the emulator's imports.
COMMANDS = {
    "demo": "replica.commands.demo:demo",
    "dev-server": "replica.devserver.command:dev_server",
    "forget": "replica.commands.reset:forget",
    "query": "replica.commands.query:query",
    "reset": "replica.commands.reset:reset",
    "status": "replica.commands.inspect:status",
    "sync": "replica.commands.sync:sync",
    "watch": "replica.commands.watch:watch",
}

log = logging.getLogger(__name__)


class _Group(click.Group):
    """A click group whose errors are one `Error:` line instead of a usage dump, and whose
    commands are imported on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command

    def main(self, *args, **kwargs):  # type: ignore[override]
        debug = "--debug" in sys.argv[1:]
        # Advice names this command's options while it runs (and only then: the command may
        # run inside another program, tests among them).
        speaking, errors.speaks_cli = errors.speaks_cli, True
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
        finally:
            errors.speaks_cli = speaking


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="replica")
@click.option("--debug", is_flag=True, help="Verbose logs and tracebacks on errors.")
@click.option("--json-logs", is_flag=True, help="Write logs as JSON lines.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, json_logs: bool) -> None:
    """Keep a live local SQLite replica of Trigger.dev runs and ElectricSQL shapes."""
    ctx.obj = {"debug": debug, "json_logs": json_logs}
    logs.configure(debug=debug, json_lines=json_logs)


def main() -> None:
    """Entry point of the `replica` console script."""
    cli()
