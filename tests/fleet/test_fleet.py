"""Fifty `replica sync` processes on one tag behind a real caching proxy (nginx, with the
config users start from, the proxy holding the token), while the emulator writes: every
replica ends with the rows of a replica that syncs directly, and the upstream sees the fleet
as about one client, within Trigger.dev's limit of 5 live polls where fifty direct replicas
are refused.

Request counts come from the emulator (what got through the proxy). Only what follows from
collapse itself is asserted, never a timing (benchmarks/fleet.py measures those). While the
simulator writes faster than a loaded machine lets every replica keep up, a replica that
falls more than 5 s behind can be answered afresh and follow live URLs of its own (docs/fleet.md,
"Live polls through the proxy"): how many upstream live polls that costs is reported by the
benchmark, not asserted.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from replica.devserver import DevServer
from replica.devserver.simulate import DEMO_TAG, Simulator

from .fleet import Fleet, Member, sync_directly
from .nginx import TOKEN_AT_PROXY, Nginx

FLEET = 50
#: Trigger.dev's per-environment limit on live polls, as small as a free plan's.
LIMIT = 5
#: Bounds a run gone wrong, never what is asserted: 50 processes on 2 loaded cores.
PATIENCE = 240.0
ROUTE = "/realtime/v1/runs"


def simulate(server: DevServer, *, runs: int, speed: float) -> threading.Thread:
    """The emulator's simulator, started now (not with the server) on a thread of its own:
    `runs` runs triggered and walked through their lives; the thread ends with the last."""
    simulator = Simulator(server.emulator, speed=speed, runs=runs)
    thread = threading.Thread(target=asyncio.run, args=(simulator.run(),), daemon=True)
    thread.start()
    return thread


def status_of(member: Member, run_id: str) -> str | None:
    return next((row[2] for row in member.rows() if row[0] == run_id), None)


@pytest.mark.slow
def test_fifty_replicas_through_nginx_converge_within_the_live_poll_limit(
    devserver_factory: Callable[..., DevServer],
    nginx_factory: Callable[..., Nginx],
    fleet_factory: Callable[..., Fleet],
    tmp_path: Path,
) -> None:
    # Several snapshot chunks, so that catching up takes more than one request.
    server = devserver_factory(chunk_rows=10, long_poll_timeout=20, live_concurrency_limit=LIMIT)
    seeded = [server.trigger("send-email", {"n": n}, tags=[DEMO_TAG]) for n in range(40)]
    proxy = nginx_factory(TOKEN_AT_PROXY, server.url, token=server.secret_key)
    # The replicas hold no credential: the proxy sends its own.
    fleet = fleet_factory(api_url=proxy.url, token="held-by-the-proxy", tag=DEMO_TAG)
    fleet.start(FLEET)
    fleet.wait_until(lambda m: len(m.rows()) == len(seeded), "the first snapshot", PATIENCE)
    # Collapse: one snapshot request went upstream for fifty replicas (the others waited for
    # it, then were answered from the cache).
    assert server.request_counts().counts[ROUTE]["initial"] < FLEET

    # Changes one at a time, each seen by every replica before the next: they all follow one
    # chain of live URLs, and never more than a few polls are upstream at once.
    for run_id in seeded[:5]:
        server.set_status(run_id, "EXECUTING")
        fleet.wait_until(
            lambda m, run_id=run_id: status_of(m, run_id) == "EXECUTING", run_id, PATIENCE
        )
    assert server.request_counts().total("429") == 0

    # Then the simulator writes as fast as it likes while the fleet follows.
    writes = simulate(server, runs=60, speed=10)
    fleet.wait_until(lambda m: not writes.is_alive(), "the simulator's last write", PATIENCE)
    # The last write: a replica holding it holds every change before it (one shape log).
    marker = server.trigger("marker", {}, tags=[DEMO_TAG])
    fleet.wait_until(lambda m: status_of(m, marker) is not None, "the last write", PATIENCE)
    direct = sync_directly(server, DEMO_TAG, tmp_path / "direct.db")
    assert len(direct) > len(seeded)
    assert [m.db.name for m in fleet.members if m.rows() != direct] == []


@pytest.mark.slow
def test_fifty_direct_replicas_are_refused_live_polls(
    devserver_factory: Callable[..., DevServer],
    fleet_factory: Callable[..., Fleet],
) -> None:
    server = devserver_factory(long_poll_timeout=20, live_concurrency_limit=LIMIT)
    server.trigger("send-email", {}, tags=[DEMO_TAG])
    fleet = fleet_factory(api_url=server.url, token=server.secret_key, tag=DEMO_TAG)
    fleet.start(FLEET)
    fleet.wait_until(lambda m: bool(m.rows()), "the first snapshot", PATIENCE)
    # Each replica holds a live poll of its own: past the fifth, Trigger.dev answers 429.
    fleet.wait_until(
        lambda m: server.request_counts().total("429") > 0, "a refused live poll", PATIENCE
    )
    assert server.request_counts().live_peak[ROUTE] > LIMIT
