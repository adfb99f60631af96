"""Typed runs: the `runs` table's public columns as a pydantic model, like the SDK's run object.

`Run.from_row(row)` takes a row as stored (JSON columns as JSON text, timestamps as ISO
text); `Run[MyPayload, MyOutput]` validates `payload` and `output` into your own models.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger(__name__)

PayloadT = TypeVar("PayloadT")
OutputT = TypeVar("OutputT")

#: The public run statuses (trigger-realtime.md §3.3). `Run.status` is a plain `str`, so a
#: status added upstream later does not break reading.
RunStatus = Literal[
    "PENDING_VERSION",
    "QUEUED",
    "DEQUEUED",
    "EXECUTING",
    "WAITING",
    "COMPLETED",
    "CANCELED",
    "FAILED",
    "CRASHED",
    "SYSTEM_FAILURE",
    "DELAYED",
    "EXPIRED",
    "TIMED_OUT",
]

_QUEUED = frozenset({"PENDING_VERSION", "QUEUED", "DELAYED", "PENDING"})
_EXECUTING = frozenset({"DEQUEUED", "EXECUTING"})
_FAILED = frozenset({"FAILED", "CRASHED", "SYSTEM_FAILURE", "EXPIRED", "TIMED_OUT"})

#: Columns of `runs` holding JSON text (decoded by `from_row`).
_JSON_COLUMNS = ("payload", "output", "metadata", "error", "tags", "realtime_streams")


class SerializedError(BaseModel):
    """A run's error as the SDK shows it: `{message, name?, stackTrace?}`."""

    model_config = ConfigDict(populate_by_name=True, frozen=True)

    message: str = ""
    name: str | None = None
    stack_trace: str | None = Field(default=None, alias="stackTrace")


class Run(BaseModel, Generic[PayloadT, OutputT], frozen=True):
    """One Trigger.dev run as replicated into `runs` (public columns, decoded).

    Status helpers follow the SDK (`isCompleted` is success or failure, *not* cancellation);
    `is_finished` is the SDK's own completion test: `finished_at` is set.

    A model for one task narrows `task_identifier` to a `Literal`; type checkers then narrow
    a union of such models on it, and `model=EmailRun | ReportRun` reads each run with the
    model of its task (see `replica.task_models`):

        class EmailRun(Run[EmailPayload, EmailResult], frozen=True):
            task_identifier: Literal["send-email"]

    (`frozen=True` is repeated because type checkers require it of subclasses of a frozen
    model, and only a frozen field may be narrowed in a subclass.)
    """

    id: str
    task_identifier: str
    status: str
    payload: PayloadT | None = None
    output: OutputT | None = None
    metadata: dict[str, Any] | None = None
    error: SerializedError | None = None
    tags: list[str] = Field(default_factory=list)
    number: int | None = None
    is_test: bool = False
    duration_ms: int = 0
    cost_in_cents: float = 0.0
    base_cost_in_cents: float = 0.0
    idempotency_key: str | None = None
    ttl: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    queued_at: datetime | None = None
    delayed_until: datetime | None = None
    expired_at: datetime | None = None
    detached_at: datetime | None = None
    realtime_streams: list[str] = Field(default_factory=list)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        """A run from a `runs` row as stored (e.g. `SELECT * FROM runs`): JSON columns are
        decoded, NULL numbers become the SDK's defaults, extra columns are ignored."""
        values = dict(row)
        for name in _JSON_COLUMNS:
            text = values.get(name)
            if isinstance(text, (str, bytes)):
                try:
                    values[name] = orjson.loads(text)
                except orjson.JSONDecodeError:
                    log.debug("run %s: column %s is not JSON; kept as text", values.get("id"), name)
        return cls.from_values(values)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Self:
        """A run from a `runs` row whose JSON columns are already decoded (`Change.row`)."""
        data = {k: v for k, v in values.items() if k in cls.model_fields and v is not None}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise _naming_the_run(exc, values.get("id")) from None

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_object(cls, value: Any) -> Any:
        # Metadata is a JSON object in the SDK; anything else is unusable as one.
        return value if value is None or isinstance(value, dict) else None

    @field_validator("error", mode="before")
    @classmethod
    def _lenient_error(cls, value: Any) -> Any:
        # A wrong error shape once broke SDK subscriptions (trigger.dev PR #1533): be lenient.
        if value is None or isinstance(value, (dict, SerializedError)):
            return value
        return {"message": str(value)}

    @field_validator("tags", "realtime_streams", mode="before")
    @classmethod
    def _string_list(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v) for v in value]
        return []

    # -- the SDK's status helpers (trigger-realtime.md §3.4) --------------------------------

    @property
    def is_queued(self) -> bool:
        return self.status in _QUEUED

    @property
    def is_executing(self) -> bool:
        return self.status in _EXECUTING

    @property
    def is_waiting(self) -> bool:
        return self.status == "WAITING"

    @property
    def is_success(self) -> bool:
        return self.status == "COMPLETED"

    @property
    def is_failed(self) -> bool:
        return self.status in _FAILED

    @property
    def is_completed(self) -> bool:
        return self.is_success or self.is_failed

    @property
    def is_cancelled(self) -> bool:
        return self.status == "CANCELED"

    @property
    def is_finished(self) -> bool:
        """True once `finished_at` is set: how the SDK decides a run is complete."""
        return self.finished_at is not None


def _naming_the_run(exc: ValidationError, run_id: Any) -> ValidationError:
    """The same validation error, titled with the run it failed on (`Run[Email, Any] of run
    run_3`): among many rows, pydantic's own title does not say which one."""
    try:
        return ValidationError.from_exception_data(
            f"{exc.title} of run {run_id}", exc.errors(), hide_input=False
        )
    except (TypeError, ValueError, KeyError):  # an error kind that cannot be rebuilt
        return exc


__all__ = ["Run", "RunStatus", "SerializedError"]
