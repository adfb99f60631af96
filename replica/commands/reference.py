"""The CLI reference (docs/cli.md) rendered from the commands' own `--help` texts."""

from __future__ import annotations

import click

INTRO = """\
# Command-line reference

Generated from `replica --help` and each command's `--help` by
`python -m replica.commands.reference > docs/cli.md`; a test keeps it in step with the code.

Every command that touches a database takes `--db PATH` (default `REPLICA_DB`, then
`./replica.db`). Errors end with one `Error: ...` line on stderr: exit status 2 for usage
errors, 1 for failures at run time (`--debug` shows the traceback).
"""

CONFIG = """\
## replica.toml

`replica sync` reads subscriptions from `./replica.toml` when it exists (or from
`--config PATH`) and re-reads the file whenever it changes: added entries start syncing,
removed ones stop (their rows are let go as if they had left the shape), and an edit that
does not parse is logged and ignored. At start, a shape synced before that neither the
command line nor the file names any more is let go of the same way (`--keep-others` keeps
it); `replica forget SHAPE` lets go of one at any time.

```toml
[[sync]]
tag = "user:1234"            # or tags = ["user:1234", "org:acme"]: runs with both tags
created_at = "24h"
skip_columns = ["payload", "output"]

[[sync]]
run = "run_cm0abc..."
stop_on_completion = false   # keep polling once it finished (default: stop 30 s after)

[[sync]]
batch = "batch_cm0xyz..."

[[sync]]
electric = "http://localhost:3000"
table = "items"
where = "priority > $1"
params = ["2"]
columns = ["id", "title", "priority"]
replica = "full"
```
"""


def render(cli: click.Group, width: int = 100) -> str:
    """The whole reference as Markdown."""
    parts = [INTRO]
    root = click.Context(
        cli,
        info_name="replica",
        terminal_width=width,
        max_content_width=width,
        **cli.context_settings,
    )
    parts.append(f"## replica\n\n```\n{cli.get_help(root)}\n```\n")
    for name in sorted(cli.list_commands(root)):
        command = cli.get_command(root, name)
        assert command is not None
        ctx = click.Context(
            command, info_name=name, parent=root, terminal_width=width, max_content_width=width
        )
        parts.append(f"## replica {name}\n\n```\n{command.get_help(ctx)}\n```\n")
    parts.append(CONFIG)
    return "\n".join(parts)


if __name__ == "__main__":
    from replica.cli import cli

    print(render(cli), end="")
