"""Every benchmark in one run: `python -m benchmarks` (or `python benchmarks/run_all.py`).

Prints a table and rewrites benchmarks/RESULTS.md (the measured part; the notes below the
marker line are kept). `--quick` is a smoke run on tiny data (seconds); `--sizes` chooses the
initial-sync sizes (default 10k, 100k and 1M runs; the 1M case takes several minutes).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `replica` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import initial_sync, live
from benchmarks.workload import Download, Upstream

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
MARKER = "<!-- measured above, notes below: run_all.py rewrites everything above this line -->"


@dataclass
class SizeResult:
    """The initial-sync figures of one size, all measured in the same run."""

    rows: int
    download: Download
    replica: initial_sync.Measured
    ceiling: initial_sync.Ceiling
    node: initial_sync.Measured | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    sizes: list[int]
    live_shapes: int
    live_burst: float
    live_samples: int
    callback_changes: int
    idle_shapes: int
    idle_seconds: float
    node: bool = True


QUICK = Plan(
    sizes=[300],
    live_shapes=5,
    live_burst=1.0,
    live_samples=20,
    callback_changes=20,
    idle_shapes=20,
    idle_seconds=3,
)
FULL = Plan(
    sizes=[10_000, 100_000, 1_000_000],
    live_shapes=100,
    live_burst=10.0,
    live_samples=300,
    callback_changes=1000,
    idle_shapes=1000,
    idle_seconds=60.0,
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


def initial(rows: int, work: Path, *, node: bool) -> SizeResult:
    """All initial-sync contenders on one emulator holding `rows` runs."""
    log.info("initial sync of %d runs: loading the emulator", rows)
    with Upstream(rows) as upstream:
        upstream.download()  # renders the snapshot: every contender then reads it warm
        download = upstream.download()
        log.info("download: %.2f s (%d responses)", download.seconds, download.responses)
        ceiling = initial_sync.raw_ceiling(upstream, work / "raw.db")
        log.info("raw upsert: %.2f s", ceiling.upsert.seconds)
        node_result = None
        if node:
            node_result = initial_sync.node_client(upstream, work / "node.db")
            log.info("node client: %.2f s", node_result.seconds)
        replica = initial_sync.replica_sync(upstream, work / "replica.db")
        log.info("replica sync: %.2f s", replica.seconds)
        for name in ("raw.db", "node.db", "replica.db"):
            for suffix in ("", "-wal", "-shm"):
                (work / f"{name}{suffix}").unlink(missing_ok=True)
    if replica.rows != rows:
        raise RuntimeError(f"replica ended with {replica.rows} runs, expected {rows}")
    if node_result is not None and node_result.rows != rows:
        raise RuntimeError(f"the node client ended with {node_result.rows} runs, expected {rows}")
    return SizeResult(rows, download, replica, ceiling, node_result)


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


def _n(rows: int) -> str:
    if rows >= 1_000_000 and rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}M"
    if rows >= 1000 and rows % 1000 == 0:
        return f"{rows // 1000}k"
    return str(rows)


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def tables(
    sizes: list[SizeResult],
    live_result: live.LiveResult | None,
    callback_result: dict[str, dict[str, float]] | None,
    idle_result: live.IdleResult | None,
) -> str:
    """The measured figures as Markdown tables (also printed)."""
    out = ["### Initial sync (rows/s; ratios are replica / other, measured in the same run)", ""]
    out.append(
        "| runs | replica sync --once | raw SQLite upsert | parse+map+upsert | "
        "TS client + better-sqlite3 | plain download | replica / raw | replica / TS | "
        "replica peak RSS | TS peak RSS |"
    )
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in sizes:
        node = s.node
        out.append(
            f"| {_n(s.rows)} | {_rate(s.replica.rate)} | {_rate(s.ceiling.upsert.rate)} | "
            f"{_rate(s.ceiling.pipeline.rate)} | {_rate(node.rate) if node else '-'} | "
            f"{_rate(s.download.rate(s.rows))} | {_ratio(s.replica.rate, s.ceiling.upsert.rate)} | "
            f"{_ratio(s.replica.rate, node.rate) if node else '-'} | "
            f"{s.replica.peak_rss_mib:.0f} MiB | "
            f"{f'{node.peak_rss_mib:.0f} MiB' if node and node.peak_rss_mib else '-'} |"
        )
    out.append("")
    out.append(
        "Wall seconds (replica and TS include process start-up; raw is the upsert alone): "
        + "; ".join(
            f"{_n(s.rows)}: replica {s.replica.seconds:.2f}, raw {s.ceiling.upsert.seconds:.2f}, "
            f"TS {s.node.seconds if s.node else float('nan'):.2f}, download "
            f"{s.download.seconds:.2f} ({s.download.bytes / 1e6:.0f} MB in "
            f"{s.download.responses} responses)"
            for s in sizes
        )
    )
    by_rows = {s.rows: s for s in sizes}
    if 100_000 in by_rows and 1_000_000 in by_rows:
        a, b = by_rows[100_000].replica, by_rows[1_000_000].replica
        out += [
            "",
            f"Peak RSS of replica sync: {a.peak_rss_mib:.0f} MiB at 100k, "
            f"{b.peak_rss_mib:.0f} MiB at 1M: ratio {b.peak_rss_mib / a.peak_rss_mib:.2f}.",
        ]
    if live_result is not None:
        r = live_result
        out += [
            "",
            f"### Live ({r.shapes} live shapes)",
            "",
            "| sustained changes/s applied | upstream commits/s | upstream commit -> row visible "
            "p50 / p99 | latency samples |",
            "|---:|---:|---:|---:|",
            f"| {_rate(r.changes_per_second)} ({r.changes} changes) | "
            f"{_rate(r.upstream_per_second)} | {r.visible_p50_ms:.1f} / {r.visible_p99_ms:.1f} ms "
            f"| {r.samples} |",
        ]
    if callback_result:
        out += [
            "",
            "### Upstream change -> callback (benchmarks/callback_latency.py, one change / 10 ms)",
            "",
            "| set-up | p50 | p99 | max | upstream -> commit p50 | commit -> callback p50 / p99 |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, c in callback_result.items():
            out.append(
                f"| {name} | {c['p50']:.1f} ms | {c['p99']:.1f} ms | {c['max']:.1f} ms | "
                f"{c['to_commit_p50']:.1f} ms | {c['after_commit_p50']:.1f} / "
                f"{c['after_commit_p99']:.1f} ms |"
            )
    if idle_result is not None:
        i = idle_result
        out += [
            "",
            f"### Idle ({i.shapes} live shapes, no changes, {i.seconds:.0f} s)",
            "",
            "| CPU seconds per minute | share of one core |",
            "|---:|---:|",
            f"| {i.cpu_seconds_per_minute:.2f} | {i.core_percent:.2f} % |",
        ]
    return "\n".join(out) + "\n"


def targets(
    sizes: list[SizeResult],
    live_result: live.LiveResult | None,
    callback_result: dict[str, dict[str, float]] | None,
    idle_result: live.IdleResult | None,
) -> str:
    """Each target of issue 8 with the figure that decides it."""
    rows = []

    def check(name: str, ok: bool | None, figure: str) -> None:
        verdict = "n/a" if ok is None else ("met" if ok else "missed")
        rows.append(f"| {name} | {figure} | {verdict} |")

    for s in sizes:
        if s.node is not None:
            ratio = s.replica.rate / s.node.rate
            check(f"initial sync {_n(s.rows)} >= 1.5x TS client", ratio >= 1.5, f"{ratio:.2f}x")
        ratio = s.replica.rate / s.ceiling.upsert.rate
        check(f"initial sync {_n(s.rows)} >= 50 % of raw SQLite", ratio >= 0.5, f"{ratio:.0%}")
    by_rows = {s.rows: s for s in sizes}
    if 100_000 in by_rows:
        rss = by_rows[100_000].replica.peak_rss_mib or 0
        check("peak RSS at 100k < 100 MB", rss * 1.048576 < 100, f"{rss * 1.048576:.0f} MB")
        if 1_000_000 in by_rows:
            ratio = (by_rows[1_000_000].replica.peak_rss_mib or 0) / rss
            check("RSS(1M) / RSS(100k) < 1.3", ratio < 1.3, f"{ratio:.2f}")
    if callback_result and "other process" in callback_result:
        p99 = callback_result["other process"]["p99"]
        check("cross-process callback p99 < 50 ms", p99 < 50, f"{p99:.1f} ms")
    if idle_result is not None:
        pct = idle_result.core_percent
        check(f"idle CPU < 1 % of a core ({idle_result.shapes} shapes)", pct < 1, f"{pct:.2f} %")
    return "| target | measured | verdict |\n|---|---:|---|\n" + "\n".join(rows) + "\n"


def write_results(text: str, path: Path = RESULTS) -> None:
    """Replace the measured part of RESULTS.md, keeping the notes after the marker."""
    notes = ""
    if path.exists():
        current = path.read_text()
        if MARKER in current:
            notes = current.split(MARKER, 1)[1]
    path.write_text(text + "\n" + MARKER + notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run on tiny data")
    parser.add_argument(
        "--sizes", help="initial-sync sizes, comma-separated (default 10000,100000,1000000)"
    )
    parser.add_argument("--no-node", action="store_true", help="skip the TypeScript client")
    parser.add_argument("--no-live", action="store_true", help="skip the live benchmark")
    parser.add_argument("--no-idle", action="store_true", help="skip the idle benchmark")
    parser.add_argument("--idle-seconds", type=float, help="length of the idle measurement")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="file to rewrite (default RESULTS.md)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    plan = QUICK if args.quick else FULL
    if args.sizes:
        plan.sizes = [int(x) for x in args.sizes.split(",")]
    if args.idle_seconds:
        plan.idle_seconds = args.idle_seconds
    node = not args.no_node and initial_sync.ensure_node_modules()
    initial_sync.compile_replica()
    info = machine()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="replica-bench-") as tmp:
        work = Path(tmp)
        sizes = [initial(rows, work, node=node) for rows in plan.sizes]
        live_result = None
        if not args.no_live:
            log.info("live: %d shapes", plan.live_shapes)
            live_result = live.live(
                work,
                shapes=plan.live_shapes,
                burst_seconds=plan.live_burst,
                samples=plan.live_samples,
            )
        callback_result = None
        if not args.no_live:
            log.info("callback latency: %d changes", plan.callback_changes)
            callback_result = callbacks(work, plan.callback_changes)
        idle_result = None
        if not args.no_idle:
            log.info("idle: %d shapes for %.0f s", plan.idle_shapes, plan.idle_seconds)
            idle_result = live.idle(work, shapes=plan.idle_shapes, seconds=plan.idle_seconds)
    figures = tables(sizes, live_result, callback_result, idle_result)
    verdicts = targets(sizes, live_result, callback_result, idle_result)
    print()
    print(figures)
    print(verdicts)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = [
        "# Benchmark results",
        "",
        f"Measured {stamp} by `python -m benchmarks{' --quick' if args.quick else ''}` "
        f"in {time.monotonic() - started:.0f} s.",
        "",
        "| machine | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in info.items()],
        "",
    ]
    write_results("\n".join(header) + "\n" + figures + "\n### Targets\n\n" + verdicts, args.results)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
