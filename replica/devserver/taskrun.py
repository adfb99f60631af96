"""Trigger.dev's `TaskRun` table as the realtime feeds see it (trigger-realtime.md §2, §6.1).

The emulated `public."TaskRun"` holds the 26 columns the realtime proxy selects plus the few
internal ones its where-clauses use (`runtimeEnvironmentId`, `batchId`) and some the write API
keeps (`idempotencyKey`, attempts, queue). `BatchTaskRun` holds batches.
"""

from __future__ import annotations

import random
import string
from typing import Final

from replica.devserver.tables import Database, Table

#: The columns the realtime proxy selects, in its order (`DEFAULT_ELECTRIC_COLUMNS`).
ELECTRIC_COLUMNS: Final = (
    "id",
    "taskIdentifier",
    "createdAt",
    "updatedAt",
    "startedAt",
    "delayUntil",
    "queuedAt",
    "expiredAt",
    "completedAt",
    "friendlyId",
    "number",
    "isTest",
    "status",
    "usageDurationMs",
    "costInCents",
    "baseCostInCents",
    "ttl",
    "payload",
    "payloadType",
    "metadata",
    "metadataType",
    "output",
    "outputType",
    "runTags",
    "error",
    "realtimeStreams",
)

#: Columns `skipColumns` can never remove.
NEVER_SKIPPED: Final = frozenset({"id", "taskIdentifier", "friendlyId", "status", "createdAt"})

_TYPES: Final = {
    "id": "text",
    "taskIdentifier": "text",
    "createdAt": "timestamp(3)",
    "updatedAt": "timestamp(3)",
    "startedAt": "timestamp(3)",
    "delayUntil": "timestamp(3)",
    "queuedAt": "timestamp(3)",
    "expiredAt": "timestamp(3)",
    "completedAt": "timestamp(3)",
    "friendlyId": "text",
    "number": "int4",
    "isTest": "bool",
    "status": "TaskRunStatus",
    "usageDurationMs": "int4",
    "costInCents": "float8",
    "baseCostInCents": "float8",
    "ttl": "text",
    "payload": "text",
    "payloadType": "text",
    "metadata": "text",
    "metadataType": "text",
    "output": "text",
    "outputType": "text",
    "runTags": "text[]",
    "error": "jsonb",
    "realtimeStreams": "text[]",
    # Not selected by the realtime proxy:
    "runtimeEnvironmentId": "text",
    "batchId": "text",
    "idempotencyKey": "text",
    "attemptNumber": "int4",
    "maxAttempts": "int4",
    "queue": "text",
}

_NOT_NULL: Final = (
    "taskIdentifier",
    "createdAt",
    "updatedAt",
    "friendlyId",
    "number",
    "isTest",
    "status",
    "usageDurationMs",
    "costInCents",
    "baseCostInCents",
    "payload",
    "payloadType",
    "metadataType",
    "outputType",
    "realtimeStreams",
    "runtimeEnvironmentId",
)

#: `TaskRunStatus` in schema order.
STATUSES: Final = (
    "DELAYED",
    "PENDING",
    "PENDING_VERSION",
    "WAITING_FOR_DEPLOY",
    "DEQUEUED",
    "EXECUTING",
    "WAITING_TO_RESUME",
    "RETRYING_AFTER_FAILURE",
    "PAUSED",
    "CANCELED",
    "INTERRUPTED",
    "COMPLETED_SUCCESSFULLY",
    "COMPLETED_WITH_ERRORS",
    "SYSTEM_FAILURE",
    "CRASHED",
    "EXPIRED",
    "TIMED_OUT",
)
FINAL_STATUSES: Final = frozenset(STATUSES[9:])

#: Public `RunStatus` for each DB status (`apiStatusFromRunStatus`).
PUBLIC_STATUS: Final = {
    "DELAYED": "DELAYED",
    "PENDING": "QUEUED",
    "PENDING_VERSION": "PENDING_VERSION",
    "WAITING_FOR_DEPLOY": "PENDING_VERSION",
    "DEQUEUED": "DEQUEUED",
    "EXECUTING": "EXECUTING",
    "RETRYING_AFTER_FAILURE": "EXECUTING",
    "WAITING_TO_RESUME": "WAITING",
    "PAUSED": "WAITING",
    "CANCELED": "CANCELED",
    "COMPLETED_SUCCESSFULLY": "COMPLETED",
    "COMPLETED_WITH_ERRORS": "FAILED",
    "INTERRUPTED": "FAILED",
    "SYSTEM_FAILURE": "SYSTEM_FAILURE",
    "CRASHED": "CRASHED",
    "EXPIRED": "EXPIRED",
    "TIMED_OUT": "TIMED_OUT",
}

TASKRUN_RELATION: Final = ("public", "TaskRun")
BATCH_RELATION: Final = ("public", "BatchTaskRun")


def define_trigger_tables(db: Database) -> tuple[Table, Table]:
    """Create (or find) `public."TaskRun"` and `public."BatchTaskRun"`."""
    runs = db.define_table("TaskRun", list(_TYPES.items()), primary_key="id", not_null=_NOT_NULL)
    batches = db.define_table(
        "BatchTaskRun",
        [
            ("id", "text"),
            ("friendlyId", "text"),
            ("runtimeEnvironmentId", "text"),
            ("status", "text"),
            ("runCount", "int4"),
            ("idempotencyKey", "text"),
            ("createdAt", "timestamp(3)"),
            ("updatedAt", "timestamp(3)"),
        ],
        primary_key="id",
        not_null=("friendlyId", "runtimeEnvironmentId", "status", "runCount", "createdAt"),
    )
    return runs, batches


_ALPHABET = string.ascii_lowercase + string.digits
_SYSTEM_RANDOM = random.SystemRandom()


def new_internal_id(rng: random.Random | None = None) -> str:
    """A cuid-like internal id (`cm` + 23 base-36 characters), as Trigger.dev v4 uses."""
    number = (rng or _SYSTEM_RANDOM).getrandbits(119)  # 36**23 > 2**119
    chars = []
    for _ in range(23):
        number, digit = divmod(number, 36)
        chars.append(_ALPHABET[digit])
    return "cm" + "".join(chars)


def friendly_run_id(internal_id: str) -> str:
    return "run_" + internal_id


def friendly_batch_id(internal_id: str) -> str:
    return "batch_" + internal_id
