"""Correct through a real cache under faults: a handle rotation (409) behind the proxy, stale
snapshots after it (the proxy's own, kept for an hour, and an upstream that ignores cache
busters), every replica converging with no change applied twice and none lost.

Each run's metadata carries a step that only ever grows; a replica's change log must show
every run's steps strictly increasing (a stale reply adopted after a fresh one would step
back, a change applied twice would repeat) and end at the last one written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from replica.devserver import DevServer

from .fleet import Fleet, Member, metadata_history, sync_directly
from .nginx import TOKEN_AT_PROXY, Nginx

TAG = "fleet:faults"
RUNS = 5
FIRST, LATE = 40, 10
PATIENCE = 240.0


def at_step(step: int) -> Callable[[Member], bool]:
    def holds(member: Member) -> bool:
        metadata = [json.loads(row[5]) for row in member.rows()]
        return len(metadata) == RUNS and all(m == {"step": step} for m in metadata)

    return holds


def write_step(server: DevServer, runs: list[str], step: int) -> None:
    for run_id in runs:
        server.set_metadata(run_id, {"step": step})


@pytest.mark.slow
def test_a_rotation_and_stale_snapshots_behind_the_proxy_converge_without_duplicates(
    devserver_factory: Callable[..., DevServer],
    nginx_factory: Callable[..., Nginx],
    fleet_factory: Callable[..., Fleet],
    tmp_path: Path,
) -> None:
    server = devserver_factory(long_poll_timeout=20)
    runs = [server.trigger("report", {}, tags=[TAG], metadata={"step": 0}) for _ in range(RUNS)]
    proxy = nginx_factory(TOKEN_AT_PROXY, server.url, token=server.secret_key)
    fleet = fleet_factory(api_url=proxy.url, token="held-by-the-proxy", tag=TAG)
    fleet.start(FIRST)
    fleet.wait_until(at_step(0), "step 0", PATIENCE)

    write_step(server, runs, 1)
    fleet.wait_until(at_step(1), "step 1", PATIENCE)
    # The handle every replica follows is retired: their live poll is answered 409 (the
    # proxy keeps that answer for a minute), and each starts over with a cache buster.
    # Upstream, the first three of those are answered with the retired handle's snapshot,
    # as by a cache that ignores cache busters.
    stale = server.add_fault("stale", times=3)
    server.rotate()
    write_step(server, runs, 2)
    # Replicas started now are answered from the proxy's cache: the snapshot of the retired
    # handle (kept an hour), then the retired handle's catch-up and live replies.
    late = fleet.start(LATE)
    write_step(server, runs, 3)
    fleet.wait_until(at_step(3), "step 3", PATIENCE)

    assert stale.fired == 3
    assert server.request_counts().total("409") > 0
    direct = sync_directly(server, TAG, tmp_path / "direct.db")
    assert [m.db.name for m in fleet.members if m.rows() != direct] == []
    for member in fleet.members:
        for run_id in runs:
            steps = [m["step"] for m in metadata_history(member.db, run_id)]
            assert steps == sorted(set(steps)), (member.db.name, run_id, steps)
            assert steps[-1] == 3
    # The late replicas did start from the stale snapshot.
    assert all(metadata_history(m.db, runs[0])[0] == {"step": 0} for m in late)
