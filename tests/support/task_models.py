"""Models of two tasks, as users write them: `Run` subclasses whose `task_identifier` is a
`Literal` (tests of `model=EmailRun | ReportRun`, and the static typing sample)."""

from __future__ import annotations

from typing import Any, Literal

import pydantic

import replica


class Email(pydantic.BaseModel):
    to: str


class Sent(pydantic.BaseModel):
    ok: bool


class Report(pydantic.BaseModel):
    report_id: str = pydantic.Field(alias="reportId")


class EmailRun(replica.Run[Email, Sent], frozen=True):
    task_identifier: Literal["send-email"]


class ReportRun(replica.Run[Report, Any], frozen=True):
    task_identifier: Literal["generate-report"]
