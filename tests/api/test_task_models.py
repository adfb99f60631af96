"""One model per task: `model=EmailRun | ReportRun` and `models={task: model}` read each run
with the model of its task; `other=` keeps, refuses or skips runs of other tasks. On a real
database written through the store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Union

import pydantic
import pytest

import replica
from replica.store import Store
from tests.notify.helpers import Writer, run
from tests.support.task_models import Email, EmailRun, Report, ReportRun, Sent


class MessageRun(replica.Run[Email, Any], frozen=True):
    """One model for two tasks."""

    task_identifier: Literal["send-email", "send-sms"]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[replica.Replica]:
    path = tmp_path / "replica.db"
    with Store(path) as store:
        Writer(store).commit(
            run(
                1,
                task_identifier="send-email",
                payload='{"to": "a@example.com"}',
                output='{"ok": true}',
                status="COMPLETED",
            ),
            run(2, task_identifier="generate-report", payload='{"reportId": "rep_1"}'),
            run(3, task_identifier="render-video", payload='"clip.mp4"'),
            run(4, task_identifier="send-email", payload='{"recipient": "b"}', tags='["bad"]'),
        )
    with replica.Replica(path) as opened:
        yield opened


def kinds(runs: list[replica.Run[Any, Any]]) -> list[tuple[str, type]]:
    return [(r.id, type(r)) for r in runs]


def test_a_union_reads_each_run_with_the_model_of_its_task(db: replica.Replica) -> None:
    runs = db.runs(tag="a", model=EmailRun | ReportRun)
    assert kinds(runs) == [("run_3", replica.Run), ("run_2", ReportRun), ("run_1", EmailRun)]
    report, email = runs[1], runs[2]
    assert isinstance(report, ReportRun) and report.payload == Report(reportId="rep_1")
    assert isinstance(email, EmailRun) and email.payload == Email(to="a@example.com")
    assert email.output == Sent(ok=True)
    assert runs[0].payload == "clip.mp4"  # another task: untyped, as decoded
    # typing.Union is the same union.
    assert kinds(db.runs(tag="a", model=Union[EmailRun, ReportRun])) == kinds(runs)  # noqa: UP007


def test_the_dict_spelling_maps_tasks_to_models(db: replica.Replica) -> None:
    runs = db.runs(
        tag="a", models={"send-email": EmailRun, "generate-report": replica.Run[Report, Any]}
    )
    assert kinds(runs) == [
        ("run_3", replica.Run),
        ("run_2", replica.Run[Report, Any]),
        ("run_1", EmailRun),
    ]
    assert runs[1].payload == Report(reportId="rep_1")


def test_a_literal_of_several_tasks_serves_them_all(db: replica.Replica) -> None:
    runs = db.runs(tag="a", model=MessageRun, other="skip")
    assert kinds(runs) == [("run_1", MessageRun)]


def test_runs_of_other_tasks_are_kept_refused_or_skipped(db: replica.Replica) -> None:
    assert [r.id for r in db.runs(tag="a", model=EmailRun | ReportRun, other="skip")] == [
        "run_2",
        "run_1",
    ]
    with pytest.raises(replica.ReplicaError) as raised:
        db.runs(tag="a", model=EmailRun | ReportRun, other="error")
    message = str(raised.value)
    assert "run run_3 is of task 'render-video'" in message
    assert "generate-report, send-email" in message and "other='skip'" in message
    with pytest.raises(replica.ReplicaError, match="run_3"):
        db.runs(tag="a", models={"send-email": EmailRun}, other="error")
    # A member for every task (task_identifier a plain str) reads the other tasks' runs.
    kept = db.runs(tag="a", model=EmailRun | replica.Run[Any, Any], other="error")
    assert kinds(kept)[0] == ("run_3", replica.Run[Any, Any])


def test_one_run_by_id(db: replica.Replica) -> None:
    assert type(db.run("run_2", model=EmailRun | ReportRun)) is ReportRun
    assert type(db.run("run_3", model=EmailRun | ReportRun)) is replica.Run
    assert db.run("run_3", model=EmailRun | ReportRun, other="skip") is None
    with pytest.raises(replica.ReplicaError, match="run run_3 is of task 'render-video'"):
        db.run("run_3", model=EmailRun, other="error")


def test_a_run_that_does_not_fit_its_model_names_the_run(db: replica.Replica) -> None:
    with pytest.raises(pydantic.ValidationError) as raised:
        db.runs(tag="bad", model=EmailRun | ReportRun)
    assert "EmailRun of run run_4" in str(raised.value)
    assert raised.value.errors()[0]["loc"] == ("payload", "to")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"model": EmailRun | MessageRun}, "two models for task 'send-email'"),
        ({"model": replica.Run | replica.Run[Email, Any]}, "two models for every task"),
        ({"model": EmailRun | int}, "a member of model= is <class 'int'>, not a Run model"),
        ({"model": Email}, "model= is"),
        ({"model": EmailRun, "models": {"send-email": EmailRun}}, "model= and models="),
        ({"models": {"send-email": EmailRun}, "payload_model": Email}, "models= and payload"),
        ({"models": {"send-sms": EmailRun}}, "models['send-sms'] is EmailRun, a model of task"),
        ({"models": {"send-email": dict}}, "models['send-email'] is <class 'dict'>"),
        ({"model": EmailRun, "other": "ignore"}, "other='ignore' is not a choice"),
    ],
)
def test_contradictions_are_refused_before_reading(
    db: replica.Replica, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(replica.ReplicaError) as raised:
        db.runs(**arguments)
    assert message in str(raised.value)


def test_the_async_twins_take_the_same_models(db: replica.Replica) -> None:
    async def main() -> tuple[Any, ...]:
        return await asyncio.gather(
            db.aruns("a", model=EmailRun | ReportRun, other="skip"),
            db.arun("run_1", models={"send-email": EmailRun}),
        )

    runs, one = asyncio.run(main())
    assert kinds(runs) == [("run_2", ReportRun), ("run_1", EmailRun)]
    assert type(one) is EmailRun
