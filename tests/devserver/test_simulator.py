"""The run simulator: deterministic with a seed, realistic lives, API runs worked too."""

from __future__ import annotations

import asyncio
import collections

from replica.devserver import DevServer, DevServerConfig, Emulator
from replica.devserver.simulate import DEMO_TAG, Simulator
from replica.devserver.taskrun import FINAL_STATUSES
from tests.support.waiting import wait_for


def simulate(seed: int, runs: int = 30) -> list[tuple]:
    async def main() -> list[tuple]:
        emu = Emulator(DevServerConfig(seed=seed, simulate_runs=runs, speed=400))
        try:
            await asyncio.wait_for(Simulator(emu).run(), 60)
            return [
                (
                    r["friendlyId"],
                    r["taskIdentifier"],
                    r["runTags"],
                    r["payload"],
                    r["payloadType"],
                    r["status"],
                    r["metadata"],
                    r["error"],
                    r["output"],
                )
                for r in emu.runs.all()
            ]
        finally:
            emu.close()

    return asyncio.run(main())


def test_same_seed_same_runs_other_seed_other_runs() -> None:
    first, again, other = simulate(1), simulate(1), simulate(2)
    assert first == again
    assert first != other
    statuses = collections.Counter(r[5] for r in first)
    assert set(statuses) <= FINAL_STATUSES  # every life ran to its end
    assert len(statuses) >= 3
    types = {r[4] for r in first}
    assert types == {
        "application/json",
        "application/super+json",
        "text/plain",
        "application/store",
    }
    assert any(DEMO_TAG in (r[2] or "") for r in first)
    errors = {r[7] for r in first if r[7]}
    assert errors  # failed runs carry TaskRunErrors


def test_api_triggered_runs_are_worked_when_simulating(devserver_factory) -> None:
    server: DevServer = devserver_factory(simulate=True, speed=200, simulate_runs=1, seed=3)
    run_id = server.trigger("my-task", {"from": "api"}, tags=["user:1234"])
    wait_for(lambda: server.run(run_id)["status"] in FINAL_STATUSES, what=f"{run_id} to be worked")
    run = server.run(run_id)
    assert run["payload"] == '{"from":"api"}'
    assert run["startedAt"] is not None or run["status"] == "EXPIRED"
