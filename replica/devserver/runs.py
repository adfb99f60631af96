"""The write side of the emulated Trigger.dev: triggering runs and moving them through life.

Every change is one transaction on `TaskRun` that also bumps `updatedAt` (Prisma's
`@updatedAt`), so subscribers see each step as an update. Payloads are stored the way the
webapp stores them: the serialized packet and its type, or an object-store path with type
`application/store` when larger than the offload threshold.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from replica.devserver.packets import ObjectStore
from replica.devserver.pgtypes import (
    PgType,
    format_array,
    format_timestamp,
    parse_array,
    parse_timestamp,
)
from replica.devserver.run_data import (
    RunDataError,
    apply_metadata_operations,
    parse_duration,
    serialize_packet,
)
from replica.devserver.tables import Database, Row, TableError
from replica.devserver.taskrun import (
    FINAL_STATUSES,
    STATUSES,
    define_trigger_tables,
    friendly_batch_id,
    friendly_run_id,
    new_internal_id,
)


class RunError(ValueError):
    """A run operation was refused; `status` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


TEXT = PgType("text")
#: Trigger.dev's metadata limit (TASK_RUN_METADATA_MAXIMUM_SIZE).
METADATA_MAX_BYTES = 256 * 1024


@dataclass
class TriggerResult:
    """What triggering returned: the run row and whether an idempotency key matched."""

    run: Row
    is_cached: bool = False

    @property
    def id(self) -> str:
        return str(self.run["friendlyId"])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _ts(value: dt.datetime) -> str:
    # Postgres timestamp(3): millisecond precision.
    return format_timestamp(value.replace(microsecond=value.microsecond // 1000 * 1000))


class RunService:
    """Trigger, batch, update, complete, fail, cancel and expire runs."""

    def __init__(
        self,
        db: Database,
        objects: ObjectStore,
        environment_id: str,
        *,
        offload_threshold: int = 512 * 1024,
        clock: Callable[[], dt.datetime] = _now,
    ) -> None:
        self.db = db
        self.objects = objects
        self.environment_id = environment_id
        self.offload_threshold = offload_threshold
        self.clock = clock
        self.table, self.batches = define_trigger_tables(db)
        self._lock = threading.RLock()
        self._numbers: dict[str, int] = {}
        self._last_update: dt.datetime = dt.datetime.min
        self.listeners: list[Callable[[Row], None]] = []

    # -- reads --------------------------------------------------------------------------

    def get(self, run_id: str) -> Row | None:
        """A run by friendly id (`run_...`) or internal id."""
        internal = run_id[4:] if run_id.startswith("run_") else run_id
        return self.db.get_by_pk(self.table, {"id": internal})

    def require(self, run_id: str) -> Row:
        run = self.get(run_id)
        if run is None:
            raise RunError("Not found", 404)
        return run

    def all(self) -> list[Row]:
        return self.db.rows(self.table)

    def get_batch(self, batch_id: str) -> Row | None:
        internal = batch_id[6:] if batch_id.startswith("batch_") else batch_id
        return self.db.get_by_pk(self.batches, {"id": internal})

    @staticmethod
    def tags_of(run: Row) -> list[str]:
        return [t for t in parse_array(run["runTags"]) if t] if run.get("runTags") else []

    # -- time ---------------------------------------------------------------------------

    def _stamp(self) -> str:
        """A fresh `updatedAt`: strictly later than the previous one, so every write shows."""
        with self._lock:
            now = self.clock()
            now = now.replace(microsecond=now.microsecond // 1000 * 1000)
            if now <= self._last_update:
                now = self._last_update + dt.timedelta(milliseconds=1)
            self._last_update = now
            return _ts(now)

    # -- trigger ------------------------------------------------------------------------

    def _find_idempotent(self, task: str, key: str) -> Row | None:
        for run in self.db.rows(self.table):
            if run["idempotencyKey"] == key and run["taskIdentifier"] == task:
                return run
        return None

    def _next_number(self, task: str) -> int:
        with self._lock:
            if task not in self._numbers:
                self._numbers[task] = sum(
                    1 for r in self.db.rows(self.table) if r["taskIdentifier"] == task
                )
            self._numbers[task] += 1
            return self._numbers[task]

    def build_run(
        self,
        task: str,
        payload: Any = None,
        options: Mapping[str, Any] | None = None,
        *,
        batch_id: str | None = None,
        rng: random.Random | None = None,
    ) -> dict[str, Any]:
        """The column values of a new run (not yet written)."""
        options = dict(options or {})
        internal = new_internal_id(rng)
        friendly = friendly_run_id(internal)
        created = self._stamp()
        text, payload_type = serialize_packet(payload, options.get("payloadType"))
        if payload_type != "application/store" and len(text.encode()) > self.offload_threshold:
            path = f"{friendly}/payload.json"
            self.objects.put(path, text.encode(), payload_type)
            text, payload_type = path, "application/store"
        tags = options.get("tags") or []
        if isinstance(tags, str):
            tags = [tags]
        if len(tags) > 10:
            raise RunError("A run can have at most 10 tags")
        metadata = options.get("metadata")
        metadata_type = options.get("metadataType") or "application/json"
        if metadata is not None and not isinstance(metadata, str):
            metadata = orjson.dumps(metadata).decode()
        delay = options.get("delay")
        delay_until = None
        if delay:
            seconds = parse_duration(str(delay)) if not isinstance(delay, (int, float)) else None
            if seconds is not None:
                delay_until = _ts(self.clock() + dt.timedelta(seconds=seconds))
            else:
                try:
                    delay_until = _ts(parse_timestamp(str(delay)))
                except ValueError:
                    raise RunError(f"invalid delay {delay!r}") from None
        ttl = options.get("ttl")
        if isinstance(ttl, (int, float)):
            ttl = f"{int(ttl)}s"
        return {
            "id": internal,
            "taskIdentifier": task,
            "createdAt": created,
            "updatedAt": created,
            "queuedAt": None if delay_until else created,
            "delayUntil": delay_until,
            "friendlyId": friendly,
            # Text forms where cheap: bulk loads then skip most of the encoding.
            "number": str(self._next_number(task)),
            "isTest": "true" if options.get("test") else "false",
            "status": "DELAYED" if delay_until else "PENDING",
            "usageDurationMs": "0",
            "costInCents": "0",
            "baseCostInCents": "0",
            "ttl": ttl,
            "payload": text,
            "payloadType": payload_type,
            "metadata": metadata,
            "metadataType": metadata_type,
            "outputType": "application/json",
            "runTags": format_array(list(tags), TEXT) if tags else None,
            "realtimeStreams": "{}",
            "runtimeEnvironmentId": self.environment_id,
            "batchId": batch_id,
            "idempotencyKey": options.get("idempotencyKey"),
            "attemptNumber": None,
            "maxAttempts": options.get("maxAttempts"),
            "queue": (options.get("queue") or {}).get("name") or f"task/{task}",
        }

    def trigger(
        self,
        task: str,
        payload: Any = None,
        options: Mapping[str, Any] | None = None,
        *,
        rng: random.Random | None = None,
    ) -> TriggerResult:
        """Create a run (or return the one with the same idempotency key)."""
        options = dict(options or {})
        key = options.get("idempotencyKey")
        if key:
            existing = self._find_idempotent(task, key)
            if existing is not None:
                return TriggerResult(existing, is_cached=True)
        values = self.build_run(task, payload, options, rng=rng)
        self.db.commit([("insert", self.table, {}, values)])
        run = self.require(values["friendlyId"])
        self._notify(run)
        return TriggerResult(run)

    def trigger_many(
        self,
        items: Iterable[Mapping[str, Any]],
        *,
        per_transaction: int = 5000,
        rng: random.Random | None = None,
    ) -> list[str]:
        """Bulk-create runs from `{task, payload, options}` items, `per_transaction` per commit.

        For loading benchmarks and demos: no idempotency lookups, no listeners (the
        simulator does not pick these runs up). Returns the run ids in order.
        """
        ids: list[str] = []
        pending: list[Any] = []
        columns = tuple(self.table.columns)

        def flush() -> None:
            if pending:
                self.db.commit(pending, encoded=True)
                pending.clear()

        for item in items:
            values = self.build_run(
                str(item["task"]), item.get("payload"), item.get("options"), rng=rng
            )
            text_only = all(v is None or type(v) is str for v in values.values())
            row = values if text_only else self.table.encode_row(values)
            pending.append(("insert", self.table, {}, {c: row.get(c) for c in columns}))
            ids.append(str(values["friendlyId"]))
            if len(pending) >= per_transaction:
                flush()
        flush()
        return ids

    def batch_trigger(
        self, items: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> tuple[Row, list[Row]]:
        """Create a batch and its runs in one transaction; items are `{task, payload, options}`."""
        if not items:
            raise RunError("A batch needs at least one item")
        internal = new_internal_id()
        stamp = self._stamp()
        batch = {
            "id": internal,
            "friendlyId": friendly_batch_id(internal),
            "runtimeEnvironmentId": self.environment_id,
            "status": "PENDING",
            "runCount": len(items),
            "idempotencyKey": idempotency_key,
            "createdAt": stamp,
            "updatedAt": stamp,
        }
        values = [
            self.build_run(
                str(item["task"]), item.get("payload"), item.get("options"), batch_id=internal
            )
            for item in items
        ]
        ops: list[Any] = [("insert", self.batches, {}, batch)]
        ops += [("insert", self.table, {}, v) for v in values]
        self.db.commit(ops)
        runs = [self.require(v["friendlyId"]) for v in values]
        for run in runs:
            self._notify(run)
        stored = self.get_batch(internal)
        assert stored is not None
        return stored, runs

    def create_batch(self, run_count: int, idempotency_key: str | None = None) -> Row:
        """Phase 1 of the 2-phase batch API: an empty batch expecting `run_count` items."""
        internal = new_internal_id()
        stamp = self._stamp()
        values = {
            "id": internal,
            "friendlyId": friendly_batch_id(internal),
            "runtimeEnvironmentId": self.environment_id,
            "status": "PENDING",
            "runCount": run_count,
            "idempotencyKey": idempotency_key,
            "createdAt": stamp,
            "updatedAt": stamp,
        }
        self.db.commit([("insert", self.batches, {}, values)])
        stored = self.get_batch(internal)
        assert stored is not None
        return stored

    def add_to_batch(self, batch: Row, items: Sequence[Mapping[str, Any]]) -> list[Row]:
        """Phase 2: trigger the streamed items as runs of `batch`."""
        values = [
            self.build_run(
                str(item["task"]), item.get("payload"), item.get("options"), batch_id=batch["id"]
            )
            for item in items
        ]
        if values:
            self.db.commit([("insert", self.table, {}, v) for v in values])
        runs = [self.require(v["friendlyId"]) for v in values]
        for run in runs:
            self._notify(run)
        return runs

    def _notify(self, run: Row) -> None:
        for listener in list(self.listeners):
            listener(run)

    # -- updates ------------------------------------------------------------------------

    def update(self, run_id: str, **values: Any) -> Row:
        """Set columns of a run (Python values or text forms), bumping `updatedAt`."""
        run = self.require(run_id)
        status = values.get("status")
        if status is not None and status not in STATUSES:
            raise RunError(f"unknown TaskRunStatus {status!r}")
        values.setdefault("updatedAt", self._stamp())
        try:
            self.db.commit([("update", self.table, {"id": run["id"]}, values)])
        except TableError as exc:
            raise RunError(str(exc)) from None
        return self.require(run_id)

    def transition(self, run_id: str, status: str, **values: Any) -> Row:
        """Move a run to `status`, filling the timestamps Trigger.dev fills."""
        run = self.require(run_id)
        now = self._stamp()
        values["status"] = status
        if status in ("DEQUEUED", "EXECUTING") and not run.get("startedAt"):
            values.setdefault("startedAt", now)
        if status == "EXECUTING":
            values.setdefault("attemptNumber", int(run.get("attemptNumber") or 0) + 1)
        if status in ("PENDING",) and not run.get("queuedAt"):
            values.setdefault("queuedAt", now)
        if status in FINAL_STATUSES:
            values.setdefault("completedAt", now)
            if status == "EXPIRED":
                values.setdefault("expiredAt", now)
            started = run.get("startedAt")
            if started and "usageDurationMs" not in values:
                elapsed = parse_timestamp(now) - parse_timestamp(started)
                values["usageDurationMs"] = int(elapsed.total_seconds() * 1000)
            if started and "costInCents" not in values:
                # About what a small machine costs per ms of compute on Trigger.dev's cloud.
                duration = int(values.get("usageDurationMs") or 0)
                values["costInCents"] = round(duration * 0.000008, 5)
                values.setdefault("baseCostInCents", 0.0025)
        values["updatedAt"] = now
        return self.update(run_id, **values)

    def complete(self, run_id: str, output: Any = None, output_type: str | None = None) -> Row:
        text, kind = serialize_packet(output, output_type)
        if output is None:
            text = None  # type: ignore[assignment]
        return self.transition(run_id, "COMPLETED_SUCCESSFULLY", output=text, outputType=kind)

    def fail(
        self,
        run_id: str,
        error: Mapping[str, Any] | None = None,
        status: str = "COMPLETED_WITH_ERRORS",
    ) -> Row:
        error = error or {
            "type": "BUILT_IN_ERROR",
            "name": "Error",
            "message": "Task failed",
            "stackTrace": "Error: Task failed",
        }
        return self.transition(run_id, status, error=dict(error))

    def cancel(self, run_id: str) -> Row:
        run = self.require(run_id)
        if run["status"] in FINAL_STATUSES:
            raise RunError("Run is already finished", 400)
        return self.transition(run_id, "CANCELED")

    def set_metadata(
        self,
        run_id: str,
        metadata: Mapping[str, Any] | None = None,
        operations: Sequence[Any] | None = None,
    ) -> dict[str, Any]:
        """`PUT /api/v1/runs/{id}/metadata`: replace and/or apply operations."""
        run = self.require(run_id)
        if run["status"] in FINAL_STATUSES:
            raise RunError("Cannot update metadata for a completed run", 400)
        current: dict[str, Any] = {}
        if metadata is not None:
            if not isinstance(metadata, Mapping):
                raise RunError("metadata must be a JSON object")
            current = dict(metadata)
        elif run.get("metadata"):
            try:
                loaded = orjson.loads(run["metadata"])
                current = loaded if isinstance(loaded, dict) else {}
            except orjson.JSONDecodeError:
                current = {}
        if operations:
            try:
                current = apply_metadata_operations(current, operations)
            except RunDataError as exc:
                raise RunError(str(exc)) from None
        text = orjson.dumps(current).decode()
        if len(text.encode()) > METADATA_MAX_BYTES:
            raise RunError("Metadata exceeds the maximum size of 256KB", 413)
        self.update(run_id, metadata=text, metadataType="application/json")
        return current
