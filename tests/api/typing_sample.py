"""Type-checked, never run: what mypy must infer for reads with a model per task
(tests/api/test_typing.py runs mypy on this file)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from typing_extensions import assert_type

import replica
from tests.support.task_models import Email, EmailRun, Report, ReportRun

Untyped = replica.Run[Any, Any]


def reads(db: replica.Replica) -> None:
    assert_type(db.runs(), list[Untyped])
    assert_type(db.runs("user:1", payload_model=Email), list[Untyped])
    assert_type(db.runs(model=replica.Run[Email, Any]), list[replica.Run[Email, Any] | Untyped])
    # A run of another task stays an untyped Run unless other= says otherwise.
    assert_type(db.runs(model=EmailRun | ReportRun), list[EmailRun | ReportRun | Untyped])
    assert_type(db.runs(model=EmailRun | ReportRun, other="skip"), list[EmailRun | ReportRun])
    assert_type(
        db.runs(models={"send-email": EmailRun, "generate-report": ReportRun}), list[Untyped]
    )
    assert_type(
        db.run("run_1", model=EmailRun | ReportRun, other="error"), EmailRun | ReportRun | None
    )
    assert_type(db.run("run_1"), Untyped | None)
    assert_type(EmailRun.from_row({}), EmailRun)


def narrowing(db: replica.Replica) -> None:
    for run in db.runs(tag="user:1", model=EmailRun | ReportRun, other="error"):
        if run.task_identifier == "send-email":
            assert_type(run, EmailRun)
            assert run.payload is not None
            assert_type(run.payload.to, str)
        else:
            assert_type(run, ReportRun)
            assert_type(run.payload, Report | None)


def streams_and_callbacks(db: replica.Replica, change: replica.Change) -> None:
    stream = db.subscribe_to_runs_with_tag("user:1", model=EmailRun | ReportRun, other="skip")
    assert_type(stream, AsyncIterator[EmailRun | ReportRun])
    assert_type(db.subscribe_to_batch("batch_1"), AsyncIterator[Untyped])
    assert_type(db.subscribe_to_run("run_1", model=EmailRun), AsyncIterator[EmailRun | Untyped])
    assert_type(change.run(), Untyped | None)
    assert_type(change.run(model=EmailRun | ReportRun, other="skip"), EmailRun | ReportRun | None)


async def async_twins(db: replica.Replica) -> None:
    runs = await db.aruns(model=EmailRun | ReportRun, other="skip")
    assert_type(runs, list[EmailRun | ReportRun])
    assert_type(await db.arun("run_1", model=EmailRun, other="error"), EmailRun | None)
    assert_type(await db.aruns("user:1"), list[Untyped])
