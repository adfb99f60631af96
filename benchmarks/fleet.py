"""Fleet benchmark: N `replica sync` processes on one tag, through nginx and directly.

The proxy runs examples/fleet/nginx.conf (the proxy holds the token; the replicas hold none)
in front of the emulator, which counts what reaches it (`DevServer.request_counts()`). Each
way starts a fresh emulator holding `--runs` runs:

- `proxy`: through nginx, under a live-poll limit of `--limit` (Trigger.dev's limit per
  environment: 10 on the free plan);
- `direct`: straight to the emulator, no limit (what the fleet costs the upstream);
- `direct-limited`: straight to the emulator under the same limit.

Measured, where the way allows:

- initial sync: the fleet starts at once; upstream requests (snapshot and catch-up) of the
  whole fleet, beside those of one replica syncing alone;
- changes one at a time, each seen by every replica before the next: upstream live requests
  per change, and the time from the commit to the last replica holding it;
- a burst: `--burst` changes at `--rate` per second (faster than a loaded machine lets every
  replica keep up): live requests per change, most live polls upstream at once;
- under the limit without a proxy: how many replicas see one change within `--observe`
  seconds (the others' live polls are refused and they wait);
- 429s; memory: resident size of the replicas and of nginx, size of its cache.

    python -m benchmarks.fleet [--replicas 50] [--runs 2000] [--changes 20] [--burst 200]

Figures are for this machine; docs/fleet.md explains them and the cost model built on them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.initial_sync import compile_replica
from benchmarks.workload import TAG, Upstream
from replica.devserver import DevServer, RequestTally
from tests.fleet.fleet import Fleet, Member, sync_once
from tests.fleet.nginx import TOKEN_AT_PROXY, Nginx, install_nginx

log = logging.getLogger(__name__)

ROUTE = "/realtime/v1/runs"
WAYS = ("proxy", "direct", "direct-limited")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: Bounds a run gone wrong (50 processes on 2 cores), never a figure.
PATIENCE = 600.0


@dataclass(frozen=True)
class Settings:
    """What a run of the benchmark measures, built once from the command line."""

    replicas: int = 50
    runs: int = 2000
    #: Changes made one at a time, then in a burst at `rate` per second.
    changes: int = 20
    burst: int = 200
    rate: float = 20.0
    #: Live polls the emulator allows at once (Trigger.dev's limit per environment).
    limit: int = 5
    #: direct-limited: seconds to wait for one change.
    observe: float = 30.0
    #: proxy: plain clients held on one live poll while nginx's memory is read.
    connections: int = 1000


@dataclass
class FleetResult:
    """The figures of one way of connecting a fleet."""

    way: str
    settings: Settings
    #: Snapshot and catch-up requests of one replica syncing alone.
    one_replica_initial: int
    #: Snapshot and catch-up requests that reached the upstream for the whole fleet.
    fleet_initial: int
    refused: int
    replica_rss_mb: float = 0.0
    nginx_rss_mb: float | None = None
    cache_mb: float | None = None
    #: proxy: nginx's CPU time per request it answered (from its cache, mostly), µs.
    nginx_cpu_us: float | None = None
    #: proxy: nginx's resident size while `settings.connections` more clients wait.
    nginx_held_rss_mb: float | None = None
    #: Live requests upstream while the changes were made one at a time.
    paced_live: int = 0
    visible_all_ms: tuple[float, ...] = ()
    burst_live: int = 0
    burst_live_peak: int = 0
    #: direct-limited: replicas that held the one change after `settings.observe` seconds.
    saw_change: int | None = None

    @property
    def initial_ratio(self) -> float:
        """Upstream initial requests of the fleet over one replica's (target: <= 1.1)."""
        return self.fleet_initial / self.one_replica_initial

    @property
    def paced_per_change(self) -> float:
        """Upstream live requests per change made one at a time (target: about 1)."""
        return self.paced_live / self.settings.changes

    @property
    def burst_per_change(self) -> float:
        return self.burst_live / self.settings.burst


class Watch:
    """Read-only connections to every replica file: which replicas hold a value yet."""

    def __init__(self, members: list[Member]) -> None:
        self.conns = [
            sqlite3.connect(f"file:{m.db}?mode=ro", uri=True, timeout=30) for m in members
        ]

    def holding(self, run_id: str, metadata: dict[str, int]) -> int:
        sql = "SELECT metadata FROM runs WHERE id = ?"
        rows = [c.execute(sql, (run_id,)).fetchone() for c in self.conns]
        return sum(row is not None and json.loads(row[0]) == metadata for row in rows)

    def wait_all(self, run_id: str, metadata: dict[str, int]) -> float:
        """Seconds until every replica holds `metadata` for the run (a sweep takes ~ms)."""
        started = time.perf_counter()
        deadline = time.monotonic() + PATIENCE
        while self.holding(run_id, metadata) < len(self.conns):
            if time.monotonic() > deadline:
                raise RuntimeError(f"not every replica saw {run_id} in {PATIENCE:.0f} s")
            time.sleep(0.002)
        return time.perf_counter() - started

    def close(self) -> None:
        for conn in self.conns:
            conn.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def nginx_pids(proxy: Nginx) -> list[int]:
    """nginx's master and its workers."""
    assert proxy.proc is not None
    children = subprocess.run(
        ["pgrep", "-P", str(proxy.proc.pid)], capture_output=True, text=True
    ).stdout.split()
    return [proxy.proc.pid, *map(int, children)]


def nginx_memory(proxy: Nginx) -> float:
    """Resident size of nginx's processes (master and worker), MB."""
    return sum(rss_mb(pid) for pid in nginx_pids(proxy))


def nginx_cpu_seconds(proxy: Nginx) -> float:
    """CPU seconds (user + system) nginx's processes have used."""
    return (
        sum(
            sum(int(field) for field in Path(f"/proc/{pid}/stat").read_text().split()[13:15])
            for pid in nginx_pids(proxy)
        )
        / CLOCK_TICKS
    )


def disk_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def initial_requests(tally: RequestTally) -> int:
    counts = tally.counts.get(ROUTE, {})
    return counts.get("initial", 0) + counts.get("catch-up", 0)


def change(server: DevServer, run_id: str, n: int) -> dict[str, int]:
    """A write to the run; the `metadata` the replicas will hold for it."""
    metadata = {"bench": n}
    server.set_metadata(run_id, metadata)
    return metadata


def measure(way: str, workdir: Path, settings: Settings, nginx: str) -> FleetResult:
    """One way of connecting `settings.replicas` replicas, on a fresh emulator."""
    limit = 100_000 if way == "direct" else settings.limit
    with Upstream(settings.runs, live_concurrency_limit=limit) as upstream:
        server = upstream.server
        run_ids = [str(r["friendlyId"]) for r in server.runs()]
        server.reset_request_counts()
        alone = sync_once(server.url, server.secret_key, TAG, workdir / f"{way}-alone.db")
        if alone.returncode != 0:
            raise RuntimeError(alone.stderr)
        one_replica_initial = initial_requests(server.request_counts())

        proxy = None
        api_url, token = server.url, server.secret_key
        if way == "proxy":
            proxy = Nginx(nginx, TOKEN_AT_PROXY, server.url, workdir / "nginx", token).start()
            api_url, token = proxy.url, "held-by-the-proxy"
        fleet = Fleet(workdir / way, api_url=api_url, token=token, tag=TAG)
        try:
            server.reset_request_counts()
            fleet.start(settings.replicas)
            fleet.wait_until(lambda m: len(m.rows()) == settings.runs, "the initial sync", PATIENCE)
            initial = server.reset_request_counts()
            log.info("%s: initial sync done", way)
            result = FleetResult(
                way, settings, one_replica_initial, initial_requests(initial), initial.total("429")
            )
            watch = Watch(fleet.members)
            rng = random.Random(1)
            if way == "direct-limited":
                run_id = rng.choice(run_ids)
                value = change(server, run_id, 0)
                time.sleep(settings.observe)
                result.saw_change = watch.holding(run_id, value)
                result.refused += server.request_counts().total("429")
            else:
                _changes(server, watch, rng, run_ids, result)
            watch.close()
            result.replica_rss_mb = statistics.median(rss_mb(m.proc.pid) for m in fleet.members)
            if proxy is not None:
                result.nginx_rss_mb = nginx_memory(proxy)
                result.cache_mb = disk_mb(proxy.workdir / "cache")
                answered = len(proxy.cache_statuses())
                result.nginx_cpu_us = nginx_cpu_seconds(proxy) / answered * 1e6
                result.nginx_held_rss_mb = asyncio.run(
                    _hold(server, proxy, fleet.members[0], run_ids[0], settings.connections)
                )
            return result
        finally:
            fleet.stop()
            if proxy is not None:
                proxy.stop()


async def _hold(server: DevServer, proxy: Nginx, member: Member, run_id: str, count: int) -> float:
    """nginx's resident size (MB) while `count` plain HTTP clients wait on the live poll of
    one position (a cursor no replica sent: one request goes upstream, the rest wait)."""
    conn = sqlite3.connect(f"file:{member.db}?mode=ro", uri=True)
    try:
        (stored,) = conn.execute("SELECT position FROM _replica_shapes").fetchone()
    finally:
        conn.close()
    position = json.loads(stored)
    params = {
        "cursor": "held",
        "handle": position["handle"],
        "live": "true",
        "log": "full",
        "offset": position["offset"],
        "tags": TAG,
    }
    headers = {"authorization": "Bearer held-by-the-proxy", "x-trigger-electric-version": "1"}
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=120, limits=limits, headers=headers) as client:
        url = f"{proxy.url}{ROUTE}"
        tasks = [asyncio.create_task(client.get(url, params=params)) for _ in range(count)]
        # Let every connection be made and wait on the cache lock.
        await asyncio.sleep(5)
        held_mb = nginx_memory(proxy)
        change(server, run_id, -1)  # answers them all
        replies = await asyncio.gather(*tasks)
    if any(r.status_code != 200 for r in replies):
        raise RuntimeError("a held client was not answered 200")
    return held_mb


def _changes(
    server: DevServer,
    watch: Watch,
    rng: random.Random,
    run_ids: list[str],
    result: FleetResult,
) -> None:
    """Changes one at a time, then a burst; their figures into `result`."""
    settings = result.settings
    visible = []
    for n in range(settings.changes):
        # At a random moment: nginx's waiting requests look for the reply every 0.5 s from
        # when they started waiting, which is just after the last change.
        time.sleep(rng.uniform(0, 1))
        run_id = rng.choice(run_ids)
        visible.append(watch.wait_all(run_id, change(server, run_id, n)) * 1000)
    paced = server.reset_request_counts()
    last_run, last = "", {}
    for n in range(settings.changes, settings.changes + settings.burst):
        last_run = rng.choice(run_ids)
        last = change(server, last_run, n)
        time.sleep(1 / settings.rate)
    watch.wait_all(last_run, last)
    bursty = server.request_counts()
    result.paced_live, result.visible_all_ms = paced.total("live"), tuple(visible)
    result.burst_live = bursty.total("live")
    result.burst_live_peak = bursty.live_peak.get(ROUTE, 0)
    result.refused += paced.total("429") + bursty.total("429")


def _ms(values: tuple[float, ...], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.0f}"


def _changed(cell: Callable[[FleetResult], str]) -> Callable[[FleetResult], str]:
    """A cell of the change figures: `-` for a way that made none."""
    return lambda r: cell(r) if r.visible_all_ms else "-"


def _saw(result: FleetResult) -> str:
    if result.saw_change is None:
        return "-"
    settings = result.settings
    return f"{result.saw_change} of {settings.replicas} after {settings.observe:.0f} s"


def _proxy_memory(result: FleetResult) -> str:
    if result.nginx_rss_mb is None or result.cache_mb is None:
        return "-"
    return f"{result.nginx_rss_mb:.0f} / {result.cache_mb:.1f}"


def _nginx_cpu(result: FleetResult) -> str:
    return "-" if result.nginx_cpu_us is None else f"{result.nginx_cpu_us:.0f}"


def _held_memory(result: FleetResult) -> str:
    if result.nginx_held_rss_mb is None:
        return "-"
    return f"{result.nginx_held_rss_mb:.0f} with {result.settings.connections} more"


def _limit(result: FleetResult) -> str:
    return "none" if result.way == "direct" else str(result.settings.limit)


def report(results: list[FleetResult]) -> str:
    """The figures as a Markdown table, one column per way."""
    rows: list[tuple[str, Callable[[FleetResult], str]]] = [
        ("replicas / runs", lambda r: f"{r.settings.replicas} / {r.settings.runs}"),
        ("live-poll limit", _limit),
        ("initial sync: one replica's requests", lambda r: str(r.one_replica_initial)),
        ("initial sync: the fleet's upstream requests", lambda r: str(r.fleet_initial)),
        ("  over one replica's (target <= 1.1)", lambda r: f"{r.initial_ratio:.2f}"),
        ("changes one at a time", _changed(lambda r: str(r.settings.changes))),
        (
            "  upstream live requests per change",
            _changed(lambda r: f"{r.paced_per_change:.2f}"),
        ),
        ("  all replicas see it, p50 ms", _changed(lambda r: _ms(r.visible_all_ms, 0.5))),
        ("  all replicas see it, p90 ms", _changed(lambda r: _ms(r.visible_all_ms, 0.9))),
        ("  all replicas see it, max ms", _changed(lambda r: _ms(r.visible_all_ms, 1.0))),
        ("burst changes", _changed(lambda r: str(r.settings.burst))),
        (
            "  upstream live requests per change",
            _changed(lambda r: f"{r.burst_per_change:.2f}"),
        ),
        ("  most live polls upstream at once", _changed(lambda r: str(r.burst_live_peak))),
        ("one change under the limit: replicas holding it", _saw),
        ("429s", lambda r: str(r.refused)),
        ("replica memory, median MB", lambda r: f"{r.replica_rss_mb:.0f}"),
        ("nginx memory MB / cache MB", _proxy_memory),
        ("nginx memory MB with more clients waiting", _held_memory),
        ("nginx CPU per request answered, µs", _nginx_cpu),
    ]
    lines = [
        "| | " + " | ".join(r.way for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    lines += [f"| {name} | " + " | ".join(cell(r) for r in results) + " |" for name, cell in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=defaults.replicas)
    parser.add_argument("--runs", type=int, default=defaults.runs)
    parser.add_argument("--changes", type=int, default=defaults.changes, help="one at a time")
    parser.add_argument("--burst", type=int, default=defaults.burst, help="changes in a burst")
    parser.add_argument("--rate", type=float, default=defaults.rate, help="burst changes per s")
    parser.add_argument("--limit", type=int, default=defaults.limit, help="live polls at once")
    parser.add_argument(
        "--observe", type=float, default=defaults.observe, help="direct-limited: seconds"
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=defaults.connections,
        help="proxy: plain clients held on one live poll while nginx's memory is read",
    )
    parser.add_argument("--ways", nargs="+", choices=WAYS, default=list(WAYS))
    args = parser.parse_args(argv)
    settings = Settings(
        args.replicas,
        args.runs,
        args.changes,
        args.burst,
        args.rate,
        args.limit,
        args.observe,
        args.connections,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    compile_replica()
    nginx = install_nginx()
    with tempfile.TemporaryDirectory(prefix="replica-fleet-") as tmp:
        results = [measure(way, Path(tmp), settings, nginx) for way in args.ways]
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
