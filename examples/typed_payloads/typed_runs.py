"""Typed payloads: runs of the `send-email` task read back as pydantic models.

Syncs a tag into the replica in this process (until everything is up to date, like a cron
job would), then reads the task's runs with `payload_model=` and `output_model=`: the
payload and output arrive validated, with attributes your editor and type checker know.

    export TRIGGER_SECRET_KEY=tr_dev_... TRIGGER_API_URL=...
    python examples/typed_payloads/typed_runs.py --tag user:1234
"""

from __future__ import annotations

import argparse
import sys

import pydantic

import replica


class EmailPayload(pydantic.BaseModel):
    """What the `send-email` task is triggered with."""

    to: str
    template: str = "welcome"


class EmailResult(pydantic.BaseModel):
    """What it returns when it succeeds."""

    ok: bool
    items: int = 0


#: The statically typed spelling of the same thing: `db.runs(..., model=EmailRun)` gives
#: `list[EmailRun]`, so `run.payload.to` type-checks.
EmailRun = replica.Run[EmailPayload, EmailResult]


def describe(run: EmailRun) -> str:
    """One line per run, using the typed fields."""
    assert run.payload is not None  # send-email is always triggered with a payload
    line = f"{run.id} to={run.payload.to} template={run.payload.template} status={run.status}"
    if run.is_success and run.output is not None:
        line += f" items={run.output.items}"
    elif run.is_failed and run.error is not None:
        line += f" error={run.error.message!r}"
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="the replica database (default: REPLICA_DB or replica.db)")
    parser.add_argument("--tag", default="user:1234", help="the tag to sync and read")
    parser.add_argument("--task", default="send-email", help="the task whose runs to read")
    parser.add_argument(
        "--no-sync", action="store_true", help="only read (another process runs replica sync)"
    )
    args = parser.parse_args(argv)

    with replica.Replica(args.db) as db:
        if not args.no_sync and not db.sync(replica.tag(args.tag), once=True):
            print("the sync failed; see `replica status`", file=sys.stderr)
            return 1
        try:
            runs = db.runs(
                tag=args.tag, task=args.task, payload_model=EmailPayload, output_model=EmailResult
            )
        except pydantic.ValidationError as exc:
            # One run whose payload does not match the model fails the whole read: the
            # error says which field; fix the model (or filter on task) and read again.
            print(f"a {args.task} run does not match EmailPayload/EmailResult:\n{exc}")
            return 1
        for run in runs:
            print(describe(run))
        done = sum(run.is_completed for run in runs)
        print(f"{len(runs)} {args.task} runs tagged {args.tag}, {done} completed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
