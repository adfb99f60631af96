"""Typed payloads: a tag's `send-email` and `generate-report` runs, each read with its task's model.

Syncs a tag into the replica in this process (until everything is up to date, like a cron
job would), then reads the tag's runs with `model=EmailRun | ReportRun`: each run is
validated by the model of its task, and a type checker narrows `run` on
`run.task_identifier`, as the SDK's `subscribeToRunsWithTag<typeof sendEmail | typeof
generateReport>` does. Runs of other tasks are left out (`other="skip"`), or refused with
`--strict` (`other="error"`).

    export TRIGGER_SECRET_KEY=tr_dev_... TRIGGER_API_URL=...
    python examples/typed_payloads/typed_runs.py --tag user:1234
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Literal

import pydantic

import replica


class EmailPayload(pydantic.BaseModel):
    """What the `send-email` task is triggered with."""

    to: str
    template: str = "welcome"


class ReportPayload(pydantic.BaseModel):
    """What the `generate-report` task is triggered with (camelCase, as sent)."""

    report_id: str = pydantic.Field(alias="reportId")
    format: str = "pdf"
    requested_at: datetime | None = pydantic.Field(default=None, alias="requestedAt")


class EmailResult(pydantic.BaseModel):
    """What `send-email` returns when it succeeds."""

    ok: bool
    items: int = 0


class ReportResult(pydantic.BaseModel):
    """What `generate-report` returns when it succeeds."""

    url: str
    pages: int
    finished_at: datetime | None = pydantic.Field(default=None, alias="finishedAt")


class EmailRun(replica.Run[EmailPayload, EmailResult], frozen=True):
    """A `send-email` run: the `Literal` is what picks this model and what type checkers
    narrow on."""

    task_identifier: Literal["send-email"]


class ReportRun(replica.Run[ReportPayload, ReportResult], frozen=True):
    """A `generate-report` run."""

    task_identifier: Literal["generate-report"]


def describe(run: EmailRun | ReportRun) -> str:
    """One line per run, using the typed fields of its task."""
    assert run.payload is not None  # both tasks are always triggered with a payload
    if run.task_identifier == "send-email":  # a type checker knows: run is an EmailRun
        line = f"{run.id} send-email to={run.payload.to} template={run.payload.template}"
        result = f" items={run.output.items}" if run.output is not None else ""
    else:  # and here a ReportRun
        line = f"{run.id} generate-report {run.payload.report_id} as {run.payload.format}"
        result = f" pages={run.output.pages}" if run.output is not None else ""
    line += f" status={run.status}"
    if run.is_success:
        line += result
    elif run.is_failed and run.error is not None:
        line += f" error={run.error.message!r}"
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--db", help="the replica database (default: REPLICA_DB or replica.db)")
    parser.add_argument("--tag", default="user:1234", help="the tag to sync and read")
    parser.add_argument(
        "--strict", action="store_true", help="refuse runs of tasks without a model"
    )
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
                tag=args.tag,
                model=EmailRun | ReportRun,
                other="error" if args.strict else "skip",
            )
        except pydantic.ValidationError as exc:
            # One run whose payload does not match its task's model fails the whole read:
            # the error names the model, the run and the field; fix the model, read again.
            print(f"a run does not match the model of its task:\n{exc}")
            return 1
        except replica.ReplicaError as exc:  # --strict, and a run of another task
            print(f"refused: {exc}")
            return 1
        for run in runs:
            print(describe(run))
        done = sum(run.is_completed for run in runs)
        print(f"{len(runs)} typed runs tagged {args.tag}, {done} completed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
