"""The run simulator: triggers tagged runs and walks them through realistic lives.

Everything random comes from `random.Random(seed)`: the same seed gives the same runs (ids,
tasks, tags, payloads, metadata steps, errors and final statuses); only wall-clock
timestamps differ. A life is planned up front as a list of (delay, step) and played by an
asyncio task, with delays divided by `speed`. Runs triggered through the API while the
simulator runs get a life too (planned from their id, so also repeatable).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from replica.devserver.runs import RunError
from replica.devserver.tables import Row
from replica.devserver.taskrun import FINAL_STATUSES

if TYPE_CHECKING:
    from replica.devserver.emulator import Emulator

log = logging.getLogger(__name__)

#: Runs tagged with this user are what `replica demo` and the README follow.
DEMO_TAG = "user:1234"


@dataclass
class Step:
    """One change in a run's life after `delay` seconds (before the speed factor)."""

    delay: float
    status: str | None = None
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class Life:
    """A simulated run: how it is triggered and what happens to it."""

    task: str
    payload: Any
    options: dict[str, Any]
    steps: list[Step]


def _error_built_in(message: str, where: str) -> dict[str, Any]:
    return {
        "type": "BUILT_IN_ERROR",
        "name": "Error",
        "message": message,
        "stackTrace": f"Error: {message}\n    at {where}",
    }


def _progress(rng: random.Random, stages: list[str], start: float, span: float) -> list[Step]:
    steps = []
    for i, stage in enumerate(stages, 1):
        steps.append(
            Step(
                rng.uniform(0.5, 1.5) * span / len(stages),
                metadata={
                    "stage": stage,
                    # 100 % only once the run is done: the last stage ends short of it.
                    "progress": round(start + (1 - start) * i / (len(stages) + 1), 2),
                },
            )
        )
    return steps


def _outcome(rng: random.Random) -> str:
    return rng.choices(
        [
            "completed",
            "failed",
            "retried",
            "crashed",
            "canceled",
            "expired",
            "timed_out",
            "system_failure",
            "waited",
            "interrupted",
        ],
        weights=[46, 10, 10, 6, 6, 5, 4, 3, 7, 3],
    )[0]


def plan_life(rng: random.Random, task: str | None = None) -> Life:
    """A random but repeatable life (`rng` decides everything)."""
    user = DEMO_TAG if rng.random() < 0.4 else f"user:{rng.randint(1000, 9999)}"
    task = task or rng.choice(
        ["send-email", "generate-report", "import-csv", "render-video", "sync-crm"]
    )
    tags = [user, rng.choice(["org:acme", "org:globex", "org:initech"])]
    options: dict[str, Any] = {"tags": tags}
    if task == "send-email":
        payload: Any = {"to": f"{user.split(':')[1]}@example.com", "template": "welcome"}
    elif task == "generate-report":
        requested = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T09:14:03.401Z"
        payload = orjson.dumps(
            {
                "json": {
                    "reportId": f"rep_{rng.randint(1000, 9999)}",
                    "format": "pdf",
                    "requestedAt": requested,
                },
                "meta": {"values": {"requestedAt": ["Date"]}},
            }
        ).decode()
        options["payloadType"] = "application/super+json"
    elif task == "import-csv":
        rows = rng.randint(500, 5000)
        payload = {
            "file": f"uploads/{rng.randint(1, 999)}.csv",
            "rows": rows,
            "sample": [[f"r{i}", i * 3] for i in range(40)],
        }
        options["offload"] = True
    elif task == "render-video":
        payload = f"Render clip-{rng.randint(1, 99)}.mp4 at {rng.choice(['720p', '1080p'])}"
        options["payloadType"] = "text/plain"
    else:
        payload = {"accountId": f"acct_{rng.randint(1, 500)}"}
        options["ttl"] = "10m"
    if rng.random() < 0.08:
        options["delay"] = "30s"
    steps: list[Step] = []
    if "delay" in options:
        steps.append(Step(rng.uniform(2, 4), status="PENDING"))
    outcome = _outcome(rng)
    queue_wait = rng.uniform(0.5, 2.0)
    if outcome == "expired":
        steps.append(Step(queue_wait + 3, status="EXPIRED"))
        return Life(task, payload, options, steps)
    if rng.random() < 0.2:
        steps.append(Step(queue_wait, status="PENDING_VERSION"))
        steps.append(Step(rng.uniform(0.5, 1.5), status="PENDING"))
    steps.append(Step(queue_wait, status="DEQUEUED"))
    steps.append(Step(0.3, status="EXECUTING", metadata={"stage": "starting", "progress": 0}))
    stages = ["fetching", "processing", "uploading"]
    steps += _progress(rng, stages[: rng.randint(1, 3)], 0.0, rng.uniform(2, 6))
    if outcome == "waited":
        steps.append(Step(0.5, status="WAITING_TO_RESUME"))
        steps.append(Step(rng.uniform(1, 3), status="EXECUTING"))
        outcome = "completed"
    if outcome == "retried":
        error = _error_built_in("Upstream returned 503", "run (src/trigger/task.ts:42:11)")
        steps.append(Step(0.5, status="RETRYING_AFTER_FAILURE", values={"error": error}))
        steps.append(
            Step(
                rng.uniform(1, 2),
                status="EXECUTING",
                values={"error": None},
                metadata={"stage": "retrying", "progress": 0.5},
            )
        )
        outcome = rng.choice(["completed", "failed"])
    final: dict[str, Any]
    if outcome == "completed":
        output: Any = {"ok": True, "items": rng.randint(1, 100)}
        final = {
            "status": "COMPLETED_SUCCESSFULLY",
            "output": orjson.dumps(output).decode(),
            "outputType": "application/json",
        }
        if task == "generate-report":
            final["output"] = orjson.dumps(
                {
                    "json": {
                        "url": "https://files.example.com/r.pdf",
                        "pages": rng.randint(1, 40),
                        "finishedAt": "2026-08-20T09:14:31.200Z",
                    },
                    "meta": {"values": {"finishedAt": ["Date"]}},
                }
            ).decode()
            final["outputType"] = "application/super+json"
    elif outcome == "failed":
        error = rng.choice(
            [
                _error_built_in(
                    "Upstream CRM returned 503 Service Unavailable",
                    "syncAccounts (src/trigger/syncCrm.ts:58:13)",
                ),
                {"type": "STRING_ERROR", "raw": "Quota exceeded"},
                {"type": "CUSTOM_ERROR", "raw": orjson.dumps({"code": "E_LIMIT"}).decode()},
            ]
        )
        final = {"status": "COMPLETED_WITH_ERRORS", "error": error}
    elif outcome == "crashed":
        final = {
            "status": "CRASHED",
            "error": {
                "type": "INTERNAL_ERROR",
                "code": "TASK_PROCESS_OOM_KILLED",
                "message": "Process was killed (out of memory)",
            },
        }
    elif outcome == "canceled":
        final = {"status": "CANCELED"}
    elif outcome == "timed_out":
        final = {
            "status": "TIMED_OUT",
            "error": {"type": "INTERNAL_ERROR", "code": "MAX_DURATION_EXCEEDED"},
        }
    elif outcome == "interrupted":
        final = {
            "status": "INTERRUPTED",
            "error": {"type": "INTERNAL_ERROR", "code": "TASK_PROCESS_SIGTERM"},
        }
    else:
        final = {
            "status": "SYSTEM_FAILURE",
            "error": {"type": "INTERNAL_ERROR", "code": "TASK_RUN_HEARTBEAT_TIMEOUT"},
        }
    status = final.pop("status")
    done = {"stage": "done", "progress": 1} if status == "COMPLETED_SUCCESSFULLY" else None
    steps.append(Step(rng.uniform(0.5, 2), status=status, values=final, metadata=done))
    return Life(task, payload, options, steps)


def plan_for_api_run(run: Row) -> Life:
    """A life for a run triggered through the API (keeps its task, payload and tags)."""
    seed = int(hashlib.sha256(str(run["id"]).encode()).hexdigest()[:12], 16)
    life = plan_life(random.Random(seed), str(run["taskIdentifier"]))
    life.steps = [s for s in life.steps if s.status != "PENDING" or run["status"] == "DELAYED"]
    return life


class Simulator:
    """Triggers `config.simulate_runs` runs (or forever) and plays their lives."""

    def __init__(
        self,
        emu: Emulator,
        *,
        seed: int | None = None,
        speed: float | None = None,
        runs: int | None = None,
        interval: float | None = None,
    ) -> None:
        config = emu.config
        self.emu = emu
        self.seed = config.seed if seed is None else seed
        self.speed = max(config.speed if speed is None else speed, 1e-6)
        self.max_runs = config.simulate_runs if runs is None else runs
        self.interval = config.simulate_interval if interval is None else interval
        self.rng = random.Random(self.seed)
        self.triggered: list[str] = []
        self._lives: set[asyncio.Task[None]] = set()
        self._own: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.done = asyncio.Event()

    async def run(self) -> None:
        """Trigger runs until `max_runs` (a burst of 5 first, so there is something to see)."""
        self._loop = asyncio.get_running_loop()
        self.emu.runs.listeners.append(self._on_api_run)
        try:
            index = 0
            while self.max_runs is None or index < self.max_runs:
                self._trigger_one()
                index += 1
                if index >= 5:
                    await asyncio.sleep(self.interval * self.rng.uniform(0.5, 1.5) / self.speed)
            while self._lives:
                await asyncio.gather(*list(self._lives), return_exceptions=True)
            self.done.set()
        finally:
            self.emu.runs.listeners.remove(self._on_api_run)
            for task in list(self._lives):
                task.cancel()

    def _trigger_one(self) -> None:
        life = plan_life(self.rng)
        options = dict(life.options)
        payload = life.payload
        if options.pop("offload", False):
            # Like the SDK for large payloads: upload first, trigger with the store path.
            suffix = f"{len(self.triggered)}-{self.rng.randrange(16**8):08x}"
            path = f"trigger/{life.task}/{suffix}/payload.json"
            self.emu.objects.put(path, orjson.dumps(payload), "application/json")
            payload, options["payloadType"] = path, "application/store"
        result = self.emu.runs.trigger(life.task, payload, options, rng=self.rng)
        self._own.add(result.id)
        self.triggered.append(result.id)
        self._play(result.id, life)

    def _on_api_run(self, run: Row) -> None:
        run_id = str(run["friendlyId"])
        loop = self._loop
        if loop is None or run_id in self._own:
            return

        def schedule() -> None:
            if run_id not in self._own:
                self._own.add(run_id)
                self._play(run_id, plan_for_api_run(run))

        # Trigger routes call this on the loop; the Python API from other threads.
        loop.call_soon_threadsafe(schedule)

    def _play(self, run_id: str, life: Life) -> None:
        task = asyncio.get_running_loop().create_task(self._live(run_id, life))
        self._lives.add(task)
        task.add_done_callback(self._lives.discard)

    async def _live(self, run_id: str, life: Life) -> None:
        runs = self.emu.runs
        for step in life.steps:
            await asyncio.sleep(step.delay / self.speed)
            current = runs.get(run_id)
            if current is None or current["status"] in FINAL_STATUSES:
                return  # canceled (or finished) through the API meanwhile
            try:
                if step.status is not None:
                    values = dict(step.values)
                    if step.metadata is not None:
                        values["metadata"] = orjson.dumps(step.metadata).decode()
                    runs.transition(run_id, step.status, **values)
                elif step.metadata is not None:
                    runs.set_metadata(run_id, step.metadata)
            except RunError as exc:  # e.g. canceled through the API meanwhile
                log.debug("simulated life of %s stops: %s", run_id, exc)
                return


SimulatorFactory = Callable[["Emulator"], Simulator]
