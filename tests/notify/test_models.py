"""Typed runs: decoding, the SDK's status helpers, generic payload and output models."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pydantic import BaseModel, ValidationError

from replica import Run

HELPERS = ("is_queued", "is_executing", "is_waiting", "is_completed", "is_failed", "is_success")


def row(status: str, **extra: object) -> dict[str, object]:
    return {"id": "run_1", "task_identifier": "t", "status": status, "tags": "[]", **extra}


@pytest.mark.parametrize(
    ("status", "true"),
    [
        ("QUEUED", {"is_queued"}),
        ("PENDING_VERSION", {"is_queued"}),
        ("DELAYED", {"is_queued"}),
        ("DEQUEUED", {"is_executing"}),
        ("EXECUTING", {"is_executing"}),
        ("WAITING", {"is_waiting"}),
        ("COMPLETED", {"is_success", "is_completed"}),
        ("FAILED", {"is_failed", "is_completed"}),
        ("CRASHED", {"is_failed", "is_completed"}),
        ("SYSTEM_FAILURE", {"is_failed", "is_completed"}),
        ("EXPIRED", {"is_failed", "is_completed"}),
        ("TIMED_OUT", {"is_failed", "is_completed"}),
        ("CANCELED", {"is_cancelled"}),  # cancelled is not "completed" in the SDK
        ("SOMETHING_NEW", set()),
    ],
)
def test_status_helpers_follow_the_sdk(status: str, true: set[str]) -> None:
    run = Run.from_row(row(status))
    flags = {name for name in (*HELPERS, "is_cancelled") if getattr(run, name)}
    assert flags == true


def test_decoding_a_stored_row() -> None:
    run = Run.from_row(
        row(
            "FAILED",
            payload='{"to": "a@b.c"}',
            output=None,
            metadata='{"progress": 0.5}',
            error='{"message": "boom", "name": "Error", "stackTrace": "at x"}',
            tags='["user:1", "org:2"]',
            is_test=1,
            duration_ms=None,
            finished_at="2026-08-20T09:23:40.500Z",
            internal_id="ignored",
        )
    )
    assert run.payload == {"to": "a@b.c"} and run.output is None
    assert run.metadata == {"progress": 0.5} and run.tags == ["user:1", "org:2"]
    assert run.error is not None and run.error.stack_trace == "at x" and run.error.name == "Error"
    assert run.is_test is True and run.duration_ms == 0  # the SDK's default for NULL
    assert run.finished_at == datetime(2026, 8, 20, 9, 23, 40, 500000, tzinfo=timezone.utc)
    assert run.is_finished


def test_lenient_about_odd_values() -> None:
    run = Run.from_row(row("FAILED", error='"just a string"', metadata="[1, 2]", tags="oops"))
    assert run.error is not None and run.error.message == "just a string"
    assert run.metadata is None and run.tags == []


class Email(BaseModel):
    to: str


def test_typed_payload_and_output() -> None:
    run = Run[Email, int].from_row(row("COMPLETED", payload='{"to": "x@y.z"}', output="42"))
    assert run.payload == Email(to="x@y.z") and run.output == 42
    with pytest.raises(ValidationError):
        Run[Email, int].from_row(row("QUEUED", payload='{"from": "nobody"}'))
