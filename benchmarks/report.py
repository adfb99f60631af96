"""The benchmark figures as Markdown: the tables run_all prints and writes to RESULTS.md, the
targets with their verdicts, and the rewrite of RESULTS.md's measured part."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.initial_sync import Measured, SizeResult
from benchmarks.live import IdleResult, LiveResult
from benchmarks.packets import PacketResult

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
MARKER = "<!-- measured above, notes below: run_all.py rewrites everything above this line -->"


@dataclass
class Figures:
    """Everything one `python -m benchmarks` measured (a part not run is empty)."""

    sizes: list[SizeResult] = field(default_factory=list)
    packets: list[PacketResult] = field(default_factory=list)
    live: LiveResult | None = None
    callbacks: dict[str, dict[str, float]] | None = None
    idle: IdleResult | None = None


def _n(rows: int) -> str:
    if rows >= 1_000_000 and rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}M"
    if rows >= 1000 and rows % 1000 == 0:
        return f"{rows // 1000}k"
    return str(rows)


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _ratio(a: Measured, b: Measured | None) -> str:
    return f"{a.rate / b.rate:.2f}x" if b is not None and b.rate else "-"


def _rss(m: Measured | None) -> str:
    return f"{m.peak_rss_mib:.0f} MiB" if m is not None and m.peak_rss_mib else "-"


def _rate_of(m: Measured | None) -> str:
    return _rate(m.rate) if m is not None else "-"


def _seconds(m: Measured | None) -> str:
    return f"{m.seconds:.2f}" if m is not None else "-"


def initial_table(sizes: list[SizeResult]) -> list[str]:
    out = ["### Initial sync (rows/s; ratios are replica / other, measured in the same run)", ""]
    out.append(
        "| runs | replica sync --once | raw SQLite upsert | parse+map+upsert | "
        "TS client + better-sqlite3 | SDK subscribeToRunsWithTag + better-sqlite3 | "
        "plain download | replica / raw | replica / TS | replica / SDK | "
        "replica peak RSS | TS peak RSS | SDK peak RSS |"
    )
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in sizes:
        out.append(
            f"| {_n(s.rows)} | {_rate(s.replica.rate)} | {_rate(s.ceiling.upsert.rate)} | "
            f"{_rate(s.ceiling.pipeline.rate)} | {_rate_of(s.node)} | {_rate_of(s.sdk)} | "
            f"{_rate(s.download.rate(s.rows))} | {_ratio(s.replica, s.ceiling.upsert)} | "
            f"{_ratio(s.replica, s.node)} | {_ratio(s.replica, s.sdk)} | "
            f"{_rss(s.replica)} | {_rss(s.node)} | {_rss(s.sdk)} |"
        )
    out.append("")
    out.append(
        "Wall seconds (replica, TS and SDK include process start-up; raw is the upsert alone): "
        + "; ".join(
            f"{_n(s.rows)}: replica {s.replica.seconds:.2f}, raw {s.ceiling.upsert.seconds:.2f}, "
            f"TS {_seconds(s.node)}, SDK {_seconds(s.sdk)}, download "
            f"{s.download.seconds:.2f} ({s.download.bytes / 1e6:.0f} MB in "
            f"{s.download.responses} responses)"
            for s in sizes
        )
    )
    skipped = [_n(s.rows) for s in sizes if s.node is not None and s.sdk is None]
    if skipped:
        out += [
            "",
            f"The SDK was not run at {', '.join(skipped)} runs (`--sdk-max-rows`; see the notes).",
        ]
    by_rows = {s.rows: s for s in sizes}
    if 100_000 in by_rows and 1_000_000 in by_rows:
        a, b = by_rows[100_000].replica, by_rows[1_000_000].replica
        if a.peak_rss_mib and b.peak_rss_mib:
            out += [
                "",
                f"Peak RSS of replica sync: {a.peak_rss_mib:.0f} MiB at 100k, "
                f"{b.peak_rss_mib:.0f} MiB at 1M: ratio {b.peak_rss_mib / a.peak_rss_mib:.2f}.",
            ]
    return out


def _workload(p: PacketResult) -> str:
    if not p.packets:
        return "none offloaded"
    return f"{p.packets:,} offloaded, {p.latency * 1000:.0f} ms"


def _with_seconds(m: Measured | None) -> str:
    return f"{_rate(m.rate)} ({m.seconds:.1f} s)" if m is not None else "-"


def packets_table(packets: list[PacketResult]) -> list[str]:
    rows = packets[0].rows
    out = [
        f"### Offloaded packets ({_n(rows)} completed runs; rows/s and wall seconds, spawn to "
        "exit; ratios are replica / other, measured in the same run)",
        "",
        "| packets, route latency | replica | TS client (downloads no packets) | SDK | "
        "replica / TS | replica / SDK | replica peak RSS | TS peak RSS | SDK peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in packets:
        out.append(
            f"| {_workload(p)} | {_with_seconds(p.replica)} | {_with_seconds(p.node)} | "
            f"{_with_seconds(p.sdk)} | {_ratio(p.replica, p.node)} | {_ratio(p.replica, p.sdk)} "
            f"| {_rss(p.replica)} | {_rss(p.node)} | {_rss(p.sdk)} |"
        )
    notes = []
    offloading = [p for p in packets if p.packets and p.node_unfetched is not None]
    if offloading:
        kept = ", ".join(
            f"{p.node_unfetched:,} of {p.packets:,} at {p.latency * 1000:.0f} ms"
            for p in offloading
        )
        notes.append(f"The TS client's rows keep the offloaded packets as store paths ({kept})")
    base = next((p for p in packets if not p.packets), None)
    if base is not None:
        notes += [
            f"packets at {p.latency * 1000:.0f} ms add "
            f"{p.replica.seconds / base.replica.seconds - 1:.0%} to replica's time"
            for p in packets
            if p.packets
        ]
    if notes:
        text = "; ".join(notes)
        out += ["", text[0].upper() + text[1:] + "."]
    with_ceiling = [p for p in packets if p.ceilings]
    if not with_ceiling:
        return out
    levels = [c.concurrency for c in with_ceiling[0].ceilings]
    out += [
        "",
        "### Packet routes' ceiling (packets/s: presign + download of every offloaded packet by "
        "a plain httpx loop in another process)",
        "",
        "| route latency | "
        + " | ".join(f"{n} concurrent" for n in levels)
        + " | emulator CPU per packet | replica's packets/s | SDK's packets/s |",
        "|---:|" + "---:|" * (len(levels) + 3),
    ]
    for p in with_ceiling:
        cpu = min(c.server_ms_per_packet for c in p.ceilings)
        sdk = _rate(p.packets / p.sdk.seconds) if p.sdk else "-"
        out.append(
            f"| {p.latency * 1000:.0f} ms | "
            + " | ".join(_rate(c.rate) for c in p.ceilings)
            + f" | {cpu:.2f} ms | {_rate(p.packets / p.replica.seconds)} | {sdk} |"
        )
    out += [
        "",
        "A contender's packets/s is its packets over its whole wall time (rows included).",
    ]
    return out


def _section(
    title: str, header: list[str], rows: list[list[str]], *, first: str = "---:"
) -> list[str]:
    """A `###` title and a Markdown table; numbers align right, the first column as `first`."""
    lines = ["", f"### {title}", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + first + "|" + "---:|" * (len(header) - 1))
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def tables(f: Figures) -> str:
    """The measured figures as Markdown tables (also printed)."""
    out = initial_table(f.sizes) if f.sizes else []
    if f.packets:
        out += ([""] if out else []) + packets_table(f.packets)
    if f.live is not None:
        r = f.live
        out += _section(
            f"Live ({r.shapes} live shapes)",
            [
                "sustained changes/s applied",
                "upstream commits/s",
                "upstream commit -> row visible p50 / p99",
                "latency samples",
            ],
            [
                [
                    f"{_rate(r.changes_per_second)} ({r.changes} changes)",
                    _rate(r.upstream_per_second),
                    f"{r.visible_p50_ms:.1f} / {r.visible_p99_ms:.1f} ms",
                    str(r.samples),
                ]
            ],
        )
    if f.callbacks:
        out += _section(
            "Upstream change -> callback (benchmarks/callback_latency.py, one change / 10 ms)",
            [
                "set-up",
                "p50",
                "p99",
                "max",
                "upstream -> commit p50",
                "commit -> callback p50 / p99",
            ],
            [
                [
                    name,
                    f"{c['p50']:.1f} ms",
                    f"{c['p99']:.1f} ms",
                    f"{c['max']:.1f} ms",
                    f"{c['to_commit_p50']:.1f} ms",
                    f"{c['after_commit_p50']:.1f} / {c['after_commit_p99']:.1f} ms",
                ]
                for name, c in f.callbacks.items()
            ],
            first="---",
        )
    if f.idle is not None:
        i = f.idle
        out += _section(
            f"Idle ({i.shapes} live shapes, no changes, {i.seconds:.0f} s)",
            ["CPU seconds per minute", "share of one core"],
            [[f"{i.cpu_seconds_per_minute:.2f}", f"{i.core_percent:.2f} %"]],
        )
    return "\n".join(out).lstrip("\n") + "\n"


def targets(f: Figures) -> str:
    """Each target of issues 8 and 16 with the figure that decides it."""
    rows = []

    def check(name: str, ok: bool | None, figure: str) -> None:
        verdict = "n/a" if ok is None else ("met" if ok else "missed")
        rows.append(f"| {name} | {figure} | {verdict} |")

    for s in f.sizes:
        if s.node is not None:
            ratio = s.replica.rate / s.node.rate
            check(f"initial sync {_n(s.rows)} >= 1.5x TS client", ratio >= 1.5, f"{ratio:.2f}x")
        if s.sdk is not None:
            ratio = s.replica.rate / s.sdk.rate
            check(f"initial sync {_n(s.rows)} >= 3x SDK", ratio >= 3, f"{ratio:.2f}x")
        ratio = s.replica.rate / s.ceiling.upsert.rate
        check(f"initial sync {_n(s.rows)} >= 50 % of raw SQLite", ratio >= 0.5, f"{ratio:.0%}")
    by_rows = {s.rows: s for s in f.sizes}
    if 100_000 in by_rows:
        rss = by_rows[100_000].replica.peak_rss_mib or 0
        check("peak RSS at 100k < 100 MB", rss * 1.048576 < 100, f"{rss * 1.048576:.0f} MB")
        if 1_000_000 in by_rows:
            ratio = (by_rows[1_000_000].replica.peak_rss_mib or 0) / rss
            check("RSS(1M) / RSS(100k) < 1.3", ratio < 1.3, f"{ratio:.2f}")
    base = next((p for p in f.packets if not p.packets), None)
    for p in f.packets:
        if not p.packets or not p.latency:
            continue
        name = f"offloaded packets, {p.latency * 1000:.0f} ms"
        if p.sdk is not None:
            ratio = p.replica.rate / p.sdk.rate
            check(f"{name}: >= 20x SDK", ratio >= 20, f"{ratio:.2f}x")
        if base is not None:
            extra = p.replica.seconds / base.replica.seconds - 1
            check(f"{name}: packets add <= 30 % to replica's time", extra <= 0.3, f"{extra:.0%}")
    if f.callbacks and "other process" in f.callbacks:
        p99 = f.callbacks["other process"]["p99"]
        check("cross-process callback p99 < 50 ms", p99 < 50, f"{p99:.1f} ms")
    if f.idle is not None:
        pct = f.idle.core_percent
        check(f"idle CPU < 1 % of a core ({f.idle.shapes} shapes)", pct < 1, f"{pct:.2f} %")
    return "| target | measured | verdict |\n|---|---:|---|\n" + "\n".join(rows) + "\n"


def write_results(text: str, path: Path = RESULTS) -> None:
    """Replace the measured part of RESULTS.md, keeping the notes after the marker."""
    notes = ""
    if path.exists():
        current = path.read_text()
        if MARKER in current:
            notes = current.split(MARKER, 1)[1]
    path.write_text(text + "\n" + MARKER + notes)
