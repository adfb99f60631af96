"""Every benchmark in one run: `python -m benchmarks` (or `python benchmarks/run_all.py`).

Prints the tables and rewrites benchmarks/RESULTS.md (the measured part, with what this run
measured; the notes below the marker line are kept). Parts, all run by default:

- `initial`: initial sync of 10k, 100k and 1M pending runs (`--sizes`) by replica, the raw
  SQLite ceiling, the TypeScript client and the Trigger.dev SDK (the 1M case takes minutes);
- `packets`: 20k completed runs (`--packet-rows`) with no packet offloaded, then with 9 % of
  payloads and outputs in the object store, with each packet latency of `--packet-latencies`
  (default 0 and 20 ms), by replica, the TypeScript client and the SDK; then the packet
  routes' own ceiling at 8, 32 and 64 concurrent fetches;
- `live`: changes per second and commit-to-visible latency over 100 live shapes, and the
  latency to a callback;
- `idle`: CPU of 1,000 idle live shapes for 60 s (`--idle-seconds`).

`--only initial,packets` runs some parts (`--no-live`, `--no-idle` drop one); `--no-node`
skips both Node contenders (TypeScript client and SDK), `--no-sdk` the SDK alone, and
`--sdk-max-rows` (default 100k) the SDK at larger sizes: it keeps a whole feed in memory
before yielding a run (at 1M it had stored 38k runs after 4 minutes, at 2.3 GB). `--quick`
is a smoke run of every part on tiny data (seconds, as CI runs it). A Node contender is
skipped, with a warning, when `npm ci` in benchmarks/node is impossible. `--results PATH`
writes elsewhere: a partial run would replace RESULTS.md's figures with its own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `replica` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import initial_sync, live, packets
from benchmarks.initial_sync import SizeResult
from benchmarks.report import RESULTS, Figures, tables, targets, write_results
from benchmarks.workload import Upstream

log = logging.getLogger(__name__)

PARTS = ("initial", "packets", "live", "idle")


@dataclass(frozen=True)
class Plan:
    """What one run measures, and on how much data."""

    sizes: list[int]
    packet_rows: int
    packet_latencies: list[float]
    packet_concurrency: list[int]
    live_shapes: int
    live_burst: float
    live_samples: int
    callback_changes: int
    idle_shapes: int
    idle_seconds: float
    parts: tuple[str, ...] = PARTS
    node: bool = True
    sdk: bool = True
    #: The SDK holds a whole feed in memory before it yields a run: not run on larger syncs.
    sdk_max_rows: int | None = None


QUICK = Plan(
    sizes=[300],
    packet_rows=200,
    packet_latencies=[0.0, 0.01],
    packet_concurrency=[8],
    live_shapes=5,
    live_burst=1.0,
    live_samples=20,
    callback_changes=20,
    idle_shapes=20,
    idle_seconds=3,
)
FULL = Plan(
    sizes=[10_000, 100_000, 1_000_000],
    packet_rows=20_000,
    packet_latencies=[0.0, 0.02],
    packet_concurrency=[8, 32, 64],
    live_shapes=100,
    live_burst=10.0,
    live_samples=300,
    callback_changes=1000,
    idle_shapes=1000,
    idle_seconds=60.0,
    sdk_max_rows=100_000,
)


def machine() -> dict[str, str]:
    """Cores, Python, SQLite and Node versions, for the record."""
    try:
        node = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except OSError:
        node = "not installed"
    return {
        "cores": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "sqlite (python)": sqlite3.sqlite_version,
        "node": node or "unknown",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def initial(rows: int, work: Path, *, node: bool, sdk: bool) -> SizeResult:
    """All initial-sync contenders on one emulator holding `rows` runs."""
    log.info("initial sync of %d runs: loading the emulator", rows)
    with Upstream(rows) as upstream:
        upstream.download()  # renders the snapshot: every contender then reads it warm
        download = upstream.download()
        log.info("download: %.2f s (%d responses)", download.seconds, download.responses)
        ceiling = initial_sync.raw_ceiling(upstream, work / "raw.db")
        log.info("raw upsert: %.2f s", ceiling.upsert.seconds)
        node_result = sdk_result = None
        if node:
            node_result = initial_sync.node_client(upstream, work / "node.db")
            log.info("node client: %.2f s", node_result.seconds)
        if sdk:
            sdk_result = initial_sync.sdk_client(upstream, work / "sdk.db")
            log.info("sdk: %.2f s", sdk_result.seconds)
        replica = initial_sync.replica_sync(upstream, work / "replica.db")
        log.info("replica sync: %.2f s", replica.seconds)
        initial_sync.discard(work, "raw.db", "node.db", "sdk.db", "replica.db")
    contenders = {"replica": replica, "the node client": node_result, "the SDK": sdk_result}
    initial_sync.expect_rows(rows, contenders)
    return SizeResult(rows, download, replica, ceiling, node_result, sdk_result)


def packet_workloads(plan: Plan, work: Path) -> list[packets.PacketResult]:
    """The packets workload without offloaded packets, then with them at each latency."""
    cases = [(0.0, 0.0)] + [(packets.OFFLOADED_SHARE, x) for x in plan.packet_latencies]
    return [
        packets.measure(
            plan.packet_rows,
            work,
            offloaded=share,
            latency=latency,
            node=plan.node,
            sdk=plan.sdk,
            concurrency=plan.packet_concurrency,
        )
        for share, latency in cases
    ]


def callbacks(work: Path, changes: int) -> dict[str, dict[str, float]]:
    """benchmarks/callback_latency.py's two set-ups (in-process, other process), 10 ms apart."""
    from replica.devserver import DevServer

    try:
        from benchmarks import callback_latency
    except ImportError:
        log.warning("benchmarks/callback_latency.py is missing: callback latency not measured")
        return {}
    results = {}
    with DevServer() as server:
        for name in ("in-process", "other process"):
            results[name] = callback_latency.scenario(name, server, work, changes, 0.01)
    return results


def _plan(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else FULL
    parts = tuple(p.strip() for p in args.only.split(",")) if args.only else PARTS
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise SystemExit(f"Error: unknown part(s) {', '.join(unknown)}; parts: {', '.join(PARTS)}")
    parts = tuple(p for p in parts if not (args.no_live and p == "live"))
    parts = tuple(p for p in parts if not (args.no_idle and p == "idle"))
    plan = replace(plan, parts=parts, node=not args.no_node, sdk=not (args.no_node or args.no_sdk))
    if args.sizes:
        plan = replace(plan, sizes=[int(x) for x in args.sizes.split(",")])
    if args.packet_rows:
        plan = replace(plan, packet_rows=args.packet_rows)
    if args.packet_latencies:
        latencies = [float(x) / 1000 for x in args.packet_latencies.split(",")]
        plan = replace(plan, packet_latencies=latencies)
    if args.idle_seconds:
        plan = replace(plan, idle_seconds=args.idle_seconds)
    if args.sdk_max_rows is not None:
        plan = replace(plan, sdk_max_rows=args.sdk_max_rows)
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run on tiny data")
    parser.add_argument("--only", help=f"parts to run, comma-separated ({', '.join(PARTS)})")
    parser.add_argument(
        "--sizes", help="initial-sync sizes, comma-separated (default 10000,100000,1000000)"
    )
    parser.add_argument("--packet-rows", type=int, help="runs of the packets workload (20000)")
    parser.add_argument(
        "--packet-latencies", help="packet route latencies in ms, comma-separated (default 0,20)"
    )
    parser.add_argument(
        "--no-node", action="store_true", help="skip the Node contenders (TS client and SDK)"
    )
    parser.add_argument("--no-sdk", action="store_true", help="skip the Trigger.dev SDK")
    parser.add_argument(
        "--sdk-max-rows",
        type=int,
        help="largest initial-sync size the SDK is run at (default 100000; 0 = every size)",
    )
    parser.add_argument("--no-live", action="store_true", help="skip the live benchmarks")
    parser.add_argument("--no-idle", action="store_true", help="skip the idle benchmark")
    parser.add_argument("--idle-seconds", type=float, help="length of the idle measurement")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="file to rewrite (default RESULTS.md)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    plan = _plan(args)
    if plan.node and not initial_sync.ensure_node_modules():
        plan = replace(plan, node=False, sdk=False)
    initial_sync.compile_replica()
    info = machine()
    started = time.monotonic()
    figures = Figures()
    with tempfile.TemporaryDirectory(prefix="replica-bench-") as tmp:
        work = Path(tmp)
        if "initial" in plan.parts:
            limit = plan.sdk_max_rows
            figures.sizes = [
                initial(rows, work, node=plan.node, sdk=plan.sdk and (not limit or rows <= limit))
                for rows in plan.sizes
            ]
        if "packets" in plan.parts:
            figures.packets = packet_workloads(plan, work)
        if "live" in plan.parts:
            log.info("live: %d shapes", plan.live_shapes)
            figures.live = live.live(
                work,
                shapes=plan.live_shapes,
                burst_seconds=plan.live_burst,
                samples=plan.live_samples,
            )
            log.info("callback latency: %d changes", plan.callback_changes)
            figures.callbacks = callbacks(work, plan.callback_changes)
        if "idle" in plan.parts:
            log.info("idle: %d shapes for %.0f s", plan.idle_shapes, plan.idle_seconds)
            figures.idle = live.idle(work, shapes=plan.idle_shapes, seconds=plan.idle_seconds)
    info["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    measured, verdicts = tables(figures), targets(figures)
    print()
    print(measured)
    print(verdicts)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(
        ["python -m benchmarks", *_shown(argv if argv is not None else sys.argv[1:])]
    )
    header = [
        "# Benchmark results",
        "",
        f"Measured {stamp} by `{command}` in {time.monotonic() - started:.0f} s.",
        "",
        "| machine | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in info.items()],
        "",
    ]
    write_results(
        "\n".join(header) + "\n" + measured + "\n### Targets\n\n" + verdicts, args.results
    )
    print(f"wrote {args.results}")
    return 0


def _shown(argv: list[str]) -> list[str]:
    """The command-line arguments worth recording (not where the results went)."""
    shown, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--results":
            skip = True
        elif not arg.startswith("--results="):
            shown.append(arg)
    return shown


if __name__ == "__main__":
    raise SystemExit(main())
