"""Callback latency: an upstream change on the emulator -> a `Replica.on_change` callback.

    python benchmarks/callback_latency.py [--changes 1000] [--interval 0.01]

Two set-ups, same emulator (in this process), same workload: one run tagged `bench`
whose metadata is updated `--changes` times, `--interval` seconds apart, each update
carrying the time it was sent. The callback computes `now - sent`.

- in-process: one process syncs (`Engine`) and runs the callback (`alisten`), woken by the
  engine's `on_commit` hook;
- other process: `replica sync` in one process, the callback in another (`listen`), woken
  by watchfiles / `PRAGMA data_version` polling.

Prints p50/p99/max of each, the ratio, and where the time goes (upstream -> commit, taken
from the change log's `committed_at`, which is stamped when the sync's transaction starts,
to the millisecond; and commit -> callback). Self-contained: the roles below are this same
file run with `--role`.

The emulator's HTTP server (uvicorn with h11) does not set TCP_NODELAY, so Nagle's
algorithm and delayed ACKs add about 40 ms to each of its responses on Linux; that is the
emulator's, not replica's, so the benchmark sets TCP_NODELAY on its listening socket
(accepted connections inherit it). `--raw-emulator` measures without that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

#: Each set-up follows a tag of its own, so it never sees the other's run.
TAGS = {"in-process": "bench-in-process", "other process": "bench-other-process"}


# -- the callback side (run in child processes) ---------------------------------------------


def _report(change: Any) -> bool:
    """Print `{"seq", "latency", "commit"}` for a benchmark change; True if it was one."""
    metadata = (change.row or {}).get("metadata")
    if change.op != "update" or not isinstance(metadata, dict) or "sent" not in metadata:
        return False
    now = time.time()
    committed = datetime.fromisoformat(change.committed_at.replace("Z", "+00:00")).timestamp()
    line = {"seq": change.seq, "latency": now - metadata["sent"], "commit": committed}
    line["sent"] = metadata["sent"]
    print(json.dumps(line), flush=True)
    return True


def role_listener(db_path: str) -> None:
    """The callback in a process of its own (the sync runs elsewhere)."""
    import replica

    db = replica.Replica(db_path)
    announced = False

    @db.on_change("runs", start="beginning")
    def on_change(change: Any) -> None:
        nonlocal announced
        if not _report(change) and not announced:
            announced = True
            print(json.dumps({"ready": True}), flush=True)

    signal.signal(signal.SIGTERM, lambda *_: db.stop())
    db.listen()
    db.close()


def role_in_process(db_path: str, api_url: str, token: str, tag: str) -> None:
    """Sync and callback in one process: the engine's on_commit hook wakes the listener."""
    import httpx

    import replica
    from replica.engine import Engine
    from replica.sources.subscriptions import sources_for
    from replica.store import Store

    async def main() -> None:
        db = replica.Replica(db_path)
        announced = False

        @db.on_change("runs", start="beginning")
        async def on_change(change: Any) -> None:
            nonlocal announced
            if not _report(change) and not announced:
                announced = True
                print(json.dumps({"ready": True}), flush=True)

        async with httpx.AsyncClient(timeout=60) as client:
            feed = replica.tag(tag, token=token, api_url=api_url)
            sources = sources_for([feed], client)
            with Store(db_path) as store:
                engine = Engine(store, client, on_commit=db.notify_committed)
                loop = asyncio.get_running_loop()
                loop.add_signal_handler(signal.SIGTERM, lambda: (engine.stop(), db.stop()))
                await asyncio.gather(engine.run(sources), db.alisten())
        db.close()

    asyncio.run(main())


# -- the driver -------------------------------------------------------------------------------


class Reader:
    """Collects the JSON lines a child prints, in a background thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for text in self.proc.stdout:
            line = json.loads(text)
            if line.get("ready"):
                self.ready.set()
            else:
                self.lines.append(line)


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    """A child with stdout piped and stderr (its logs) kept in `log`."""
    with log.open("a") as errors:
        return subprocess.Popen(
            [sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=errors, text=True
        )


def drive(
    server: Any, tag: str, reader: Reader, changes: int, interval: float
) -> list[dict[str, Any]]:
    run_id = server.trigger("bench", {"n": 0}, tags=[tag])
    if not reader.ready.wait(60):
        raise SystemExit("the callback never saw the benchmark run")
    time.sleep(0.5)  # let the sync settle into its live long-poll
    next_at = time.monotonic()
    for i in range(changes):
        server.set_metadata(run_id, {"sent": time.time(), "i": i})
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    deadline = time.monotonic() + 60
    while len(reader.lines) < changes and time.monotonic() < deadline:
        time.sleep(0.05)
    if len(reader.lines) < changes:
        raise SystemExit(f"only {len(reader.lines)} of {changes} changes reached the callback")
    return reader.lines[:changes]


def stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def scenario(name: str, server: Any, workdir: Path, changes: int, interval: float) -> dict:
    from replica import Replica

    db = workdir / f"{name}.db"
    Replica(db).close()
    env = {
        **os.environ,
        "TRIGGER_API_URL": server.url,
        "TRIGGER_SECRET_KEY": server.secret_key,
        "PYTHONUNBUFFERED": "1",
    }
    here, tag = str(Path(__file__).resolve()), TAGS[name]
    log = workdir / f"{name}.log"
    if name == "in-process":
        args = [here, "--role", "in-process", "--db", str(db), "--api-url", server.url]
        procs = [start([*args, "--tag", tag], {**env, "BENCH_TOKEN": server.secret_key}, log)]
        reader = Reader(procs[0])
    else:
        listener = start([here, "--role", "listener", "--db", str(db)], env, log)
        sync = start(["-m", "replica", "sync", "--tag", tag, "--db", str(db)], env, log)
        procs = [listener, sync]
        reader = Reader(listener)
    try:
        lines = drive(server, tag, reader, changes, interval)
    except SystemExit:
        print(f"{name}: the children's logs end with:\n{log.read_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        stop(procs)
    return summarise(lines)


def summarise(lines: list[dict[str, Any]]) -> dict[str, float]:
    latency = sorted(line["latency"] * 1000 for line in lines)
    to_commit = sorted((line["commit"] - line["sent"]) * 1000 for line in lines)
    after_commit = sorted(
        (line["sent"] + line["latency"] - line["commit"]) * 1000 for line in lines
    )
    return {
        "p50": percentile(latency, 50),
        "p99": percentile(latency, 99),
        "max": latency[-1],
        "mean": statistics.fmean(latency),
        "to_commit_p50": percentile(to_commit, 50),
        "after_commit_p50": percentile(after_commit, 50),
        "after_commit_p99": percentile(after_commit, 99),
    }


def percentile(values: list[float], pct: float) -> float:
    index = min(len(values) - 1, max(0, round(pct / 100 * len(values) + 0.5) - 1))
    return values[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between changes")
    parser.add_argument(
        "--raw-emulator", action="store_true", help="leave the emulator without TCP_NODELAY"
    )
    parser.add_argument("--role", choices=["listener", "in-process"], help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--api-url", help=argparse.SUPPRESS)
    parser.add_argument("--tag", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "listener":
        role_listener(args.db)
        return
    if args.role == "in-process":
        role_in_process(args.db, args.api_url, os.environ["BENCH_TOKEN"], args.tag)
        return

    from replica.devserver import DevServer

    print(
        f"callback latency: upstream change on the emulator -> callback; {args.changes} "
        f"changes, one every {args.interval * 1000:.0f} ms; {os.cpu_count()} CPUs"
        + ("; emulator without TCP_NODELAY" if args.raw_emulator else ""),
        flush=True,
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp, DevServer() as server:
        if not args.raw_emulator:
            server._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for name in ("in-process", "other process"):
            results[name] = scenario(name, server, Path(tmp), args.changes, args.interval)
    print()
    print(f"{'':16}{'p50':>9}{'p99':>9}{'max':>9}{'mean':>9}   upstream->commit  commit->callback")
    print(f"{'':16}{'ms':>9}{'ms':>9}{'ms':>9}{'ms':>9}   p50 ms            p50 / p99 ms")
    for name, r in results.items():
        print(
            f"{name:16}{r['p50']:9.1f}{r['p99']:9.1f}{r['max']:9.1f}{r['mean']:9.1f}   "
            f"{r['to_commit_p50']:<18.1f}{r['after_commit_p50']:.1f} / {r['after_commit_p99']:.1f}"
        )
    inside, other = results["in-process"], results["other process"]
    print(
        f"{'ratio':16}{other['p50'] / inside['p50']:8.1f}x{other['p99'] / inside['p99']:8.1f}x"
        "   (other process / in-process)"
    )


if __name__ == "__main__":
    main()
