"""Initial sync of one tag feed by four contenders reading the same responses.

- `replica_sync`: `replica sync --once` as a subprocess (wall time from spawn to exit, and
  its peak RSS, `VmHWM`);
- `raw_ceiling`: the same responses parsed and mapped by replica's own code (untimed), then
  written with a prepared `executemany` upsert into a bare `runs` table, one transaction per
  response (timed): what SQLite itself costs. The same pass also times parse + map + upsert;
- `node_client`: the official `@electric-sql/client` materialising the responses into
  better-sqlite3 (benchmarks/node/materialize.mjs), as a subprocess like replica;
- `sdk_client`: the Trigger.dev SDK's `runs.subscribeToRunsWithTag` upserting each run it
  yields into better-sqlite3 (benchmarks/node/sdk-materialize.mjs), likewise.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from benchmarks.workload import TAG, Download, Upstream
from replica.protocol.messages import parse_body
from replica.protocol.values import RowParser, parse_schema_header
from replica.sources.taskrun import RunMapper
from replica.store.database import connect
from replica.tables import RUNS

log = logging.getLogger(__name__)

NODE_DIR = Path(__file__).resolve().parent / "node"
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Measured:
    """One contender's initial sync: wall seconds, rows it ended with, peak RSS (MiB)."""

    seconds: float
    rows: int
    peak_rss_mib: float | None = None

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclass
class Ceiling:
    """The raw SQLite ceiling and the parse + map + upsert pipeline, from one pass."""

    upsert: Measured
    pipeline: Measured


@dataclass
class SizeResult:
    """The initial-sync figures of one size, all measured in the same run."""

    rows: int
    download: Download
    replica: Measured
    ceiling: Ceiling
    node: Measured | None
    sdk: Measured | None


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    """Wait for a child: (exit status, its peak RSS in MiB).

    The peak is the child's own `VmHWM`, read every few milliseconds while it runs. Not
    `ru_maxrss` from wait4: Linux carries the parent's peak over into an exec'd child, and
    this process holds the emulator and its data (hundreds of MB), which would be reported
    as the child's.
    """
    deadline = time.monotonic() + timeout
    peak_kib = 0
    while True:
        peak_kib = max(peak_kib, _peak_rss_kib(proc.pid))
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, (peak_kib or usage.ru_maxrss) / 1024
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"{proc.args!r} took longer than {timeout:.0f} s")
        time.sleep(0.005)


def _peak_rss_kib(pid: int) -> int:
    """`VmHWM` of a running process (its peak resident set), 0 where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def replica_sync(upstream: Upstream, db: Path, *, timeout: float = 3600) -> Measured:
    """`replica sync --once --tag bench` into a fresh `db`."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    env = sync_env(upstream.token)
    command = [sys.executable, "-m", "replica", "sync", "--once", "--tag", TAG]
    command += ["--db", str(db), "--api-url", upstream.url]
    log_path = db.with_suffix(".log")
    with log_path.open("wb") as log_file:  # a file: an unread pipe would fill and block it
        started = time.perf_counter()
        proc = subprocess.Popen(
            command, cwd=db.parent, env=env, stdout=subprocess.DEVNULL, stderr=log_file
        )
        status, rss = _wait(proc, timeout)
        seconds = time.perf_counter() - started
    stderr = log_path.read_text(errors="replace")
    if status != 0:
        raise RuntimeError(f"replica sync failed ({status}):\n{stderr[-3000:]}")
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    return Measured(seconds, rows, rss)


def sync_env(token: str) -> dict[str, str]:
    """The environment of a `replica sync` subprocess: the token, and bytecode caching on
    (as in any installed package; see `compile_replica`)."""
    env = {**os.environ, "TRIGGER_SECRET_KEY": token}
    env.pop("TRIGGER_ACCESS_TOKEN", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def compile_replica() -> None:
    """Byte-compile replica once, as installing it would, so that no measured start-up
    compiles modules (some environments set PYTHONDONTWRITEBYTECODE)."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "replica")],
        check=False,
        capture_output=True,
        timeout=300,
    )


def _bare_table(conn: sqlite3.Connection) -> tuple[str, list[str]]:
    columns = [c.name for c in RUNS.columns if c.name != "detached_at"]
    conn.execute(
        "CREATE TABLE runs ("
        + ", ".join(f"{c} {RUNS_TYPES[c]}{' PRIMARY KEY' if c == 'id' else ''}" for c in columns)
        + ")"
    )
    sql = (
        f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        "ON CONFLICT (id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in columns if c != "id")
    )
    return sql, columns


RUNS_TYPES = {c.name: c.type for c in RUNS.columns}


def raw_ceiling(upstream: Upstream, db: Path) -> Ceiling:
    """Parse and map every response with replica's code, then upsert it (see module doc)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    conn = connect(db)
    sql, columns = _bare_table(conn)
    mapper = RunMapper()
    parser: RowParser | None = None
    upsert_seconds = pipeline_seconds = 0.0
    loop = asyncio.new_event_loop()
    try:
        for response in upstream.pages():
            body = response.content
            started = time.perf_counter()
            if parser is None:
                parser = RowParser(parse_schema_header(response.headers["electric-schema"]))
            parsed = parse_body(body, parser)
            changes = loop.run_until_complete(mapper.map(parsed.changes))
            mapped = time.perf_counter()
            rows = [tuple(c.values.get(name) for name in columns) for c in changes]
            written = time.perf_counter()
            conn.execute("BEGIN")
            conn.executemany(sql, rows)
            conn.execute("COMMIT")
            done = time.perf_counter()
            upsert_seconds += done - written
            pipeline_seconds += (mapped - started) + (done - written)
        count = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    finally:
        loop.close()
        conn.close()
    return Ceiling(Measured(upsert_seconds, count), Measured(pipeline_seconds, count))


def discard(work: Path, *names: str) -> None:
    """Delete the contenders' databases `names` in `work`, with their WAL files."""
    for name in names:
        for suffix in ("", "-wal", "-shm"):
            (work / f"{name}{suffix}").unlink(missing_ok=True)


def expect_rows(rows: int, results: Mapping[str, Measured | None]) -> None:
    """Fail when a contender (by name; None = not run) ended with other than `rows` runs."""
    for name, result in results.items():
        if result is not None and result.rows != rows:
            raise RuntimeError(f"{name} ended with {result.rows} runs, expected {rows}")


def ensure_node_modules() -> bool:
    """`npm ci` in benchmarks/node when node_modules is missing or older than the lockfile.

    Returns False (the Node contender is skipped) when node or npm is not installed.
    """
    if shutil.which("node") is None or shutil.which("npm") is None:
        log.warning("node/npm not found: the Node contenders (TS client, SDK) are not measured")
        return False
    lock = NODE_DIR / "package-lock.json"
    installed = NODE_DIR / "node_modules" / ".package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return True
    log.info("installing the Node benchmark client (npm ci; better-sqlite3 may build ~3 min)")
    result = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if result.returncode != 0:
        # better-sqlite3 builds from source where no prebuilt binary can be fetched: without
        # a compiler the TypeScript client is left out rather than failing every benchmark.
        log.warning(
            "npm ci failed in %s; the Node contenders (TS client, SDK) are not measured:\n%s",
            NODE_DIR,
            result.stderr[-2000:],
        )
        return False
    return True


def node_client(upstream: Upstream, db: Path, *, timeout: float = 3600) -> Measured:
    """The official TypeScript client into better-sqlite3 (see benchmarks/node)."""
    return _node("materialize.mjs", [upstream.url, upstream.token, str(db), TAG], db, timeout)


def sdk_client(upstream: Upstream, db: Path, *, timeout: float = 3600) -> Measured:
    """The Trigger.dev SDK's `runs.subscribeToRunsWithTag` into better-sqlite3, until it has
    seen every run of the workload (benchmarks/node/sdk-materialize.mjs)."""
    args = [upstream.url, upstream.token, str(db), TAG, str(upstream.rows)]
    return _node("sdk-materialize.mjs", args, db, timeout)


def _node(script: str, args: list[str], db: Path, timeout: float) -> Measured:
    """Run a benchmarks/node script writing `db`: spawn to exit, its peak RSS, and the rows
    of its last `{"event": "done"}` line."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    command = ["node", str(NODE_DIR / script), *args]
    out_path, err_path = db.with_suffix(".out"), db.with_suffix(".log")
    with out_path.open("wb") as out_file, err_path.open("wb") as err_file:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=NODE_DIR, stdout=out_file, stderr=err_file)
        status, rss = _wait(proc, timeout)
        seconds = time.perf_counter() - started
    out = out_path.read_text()
    err = err_path.read_text(errors="replace")
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    done = [e for e in events if e.get("event") == "done"]
    if status != 0 or not done:
        raise RuntimeError(f"{script} failed ({status}): {out[-1000:]}\n{err[-2000:]}")
    return Measured(seconds, int(done[-1]["rows"]), rss)
