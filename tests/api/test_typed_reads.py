"""Typed reads: `payload_model=`/`output_model=` beside `model=`, and the async twins
`aquery`/`arun`/`aruns`, on a real database written through the store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

import replica
from replica.store import Store
from tests.notify.helpers import Writer, run


class Email(pydantic.BaseModel):
    to: str


class Sent(pydantic.BaseModel):
    ok: bool


@pytest.fixture
def db(tmp_path: Path) -> Iterator[replica.Replica]:
    path = tmp_path / "replica.db"
    with Store(path) as store:
        Writer(store).commit(
            run(1, payload='{"to": "a@example.com"}', output='{"ok": true}', status="COMPLETED"),
            run(2, payload='{"to": "b@example.com"}', tags='["user:1"]'),
            run(3, payload='{"nope": 1}', task_identifier="other"),
        )
    with replica.Replica(path) as opened:
        yield opened


def test_payload_and_output_models(db: replica.Replica) -> None:
    one = db.run("run_1", payload_model=Email, output_model=Sent)
    assert one is not None
    assert one.payload == Email(to="a@example.com")
    assert one.output == Sent(ok=True)
    # One side alone: the other stays as decoded JSON.
    only_payload = db.run("run_1", payload_model=Email)
    assert only_payload is not None and only_payload.output == {"ok": True}
    typed = db.runs(task="task", payload_model=Email)
    assert [r.payload.to for r in typed] == ["b@example.com", "a@example.com"]  # type: ignore[union-attr]


def test_the_shorthand_is_the_same_model_as_the_long_spelling(db: replica.Replica) -> None:
    short = db.run("run_1", payload_model=Email, output_model=Sent)
    long = db.run("run_1", model=replica.Run[Email, Sent])
    assert type(short) is type(long)
    assert short == long


def test_a_payload_that_does_not_fit_raises_naming_the_run(db: replica.Replica) -> None:
    with pytest.raises(pydantic.ValidationError) as raised:
        db.run("run_3", payload_model=Email)
    assert "of run run_3" in str(raised.value)
    with pytest.raises(pydantic.ValidationError) as raised:
        db.runs(model=replica.Run[Email, Any])
    assert "of run run_3" in str(raised.value)
    assert raised.value.errors()[0]["loc"] == ("payload", "to")


@pytest.mark.parametrize("status", ["completed", "Completed", ["QUEUED", "completed"]])
def test_statuses_are_public_run_statuses_in_any_case(
    db: replica.Replica, status: str | list[str]
) -> None:
    assert "run_1" in {r.id for r in db.runs(status=status)}


@pytest.mark.parametrize("status", ["NOPE", "COMPLETED_SUCCESSFULLY", ["QUEUED", "done"]])
def test_an_unknown_status_is_refused_rather_than_matching_nothing(
    db: replica.Replica, status: str | list[str]
) -> None:
    with pytest.raises(replica.ReplicaError, match="is not a run status") as raised:
        db.runs(status=status)
    assert "COMPLETED" in raised.value.hint


def test_both_spellings_at_once_are_refused(db: replica.Replica) -> None:
    with pytest.raises(replica.ReplicaError, match="both given"):
        db.runs(model=replica.Run[Email, Any], payload_model=Email)


def test_async_twins_read_the_same(db: replica.Replica) -> None:
    async def main() -> tuple[Any, ...]:
        return await asyncio.gather(
            db.aquery("SELECT count(*) AS n FROM runs"),
            db.arun("run_2", payload_model=Email),
            db.aruns("user:1"),
            db.arun("run_nope"),
        )

    rows, two, tagged, missing = asyncio.run(main())
    assert rows == [{"n": 3}]
    assert two is not None and two.payload == Email(to="b@example.com")
    assert [r.id for r in tagged] == ["run_2"]
    assert missing is None
