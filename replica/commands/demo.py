"""`replica demo`: the whole loop on a laptop, no account needed.

Starts the local emulator with simulated runs, syncs tag `user:1234` into a fresh
`replica-demo.db` and shows those runs changing live, read back from the SQLite file.

The demo writes like any other writer: it takes the file's writer lock first, so it never
touches a database another process is writing. It starts afresh by replacing the file only
when an earlier demo made it (`_replica_demo` marks it), or when told to with `--replace`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import click

from replica.commands.common import logging_options, render_table
from replica.devserver.server import DevServer
from replica.engine import Engine
from replica.errors import DatabaseError
from replica.iso_time import now_iso
from replica.sources.specs import TagSpec
from replica.sources.subscriptions import Feed, sources_for, sync_clients
from replica.sources.trigger import TriggerConfig
from replica.store import Store
from replica.store.database import WriterLock, connect

DEMO_TAG = "user:1234"
COLUMNS = ("run", "task", "status", "progress", "duration")

log = logging.getLogger(__name__)


@click.command()
@click.option(
    "--db",
    "db_path",
    default="replica-demo.db",
    show_default=True,
    metavar="PATH",
    help="Where to write the demo replica (a file an earlier demo made is replaced).",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Replace the --db file even if the demo did not make it.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Stop after this many seconds (default: run until Ctrl-C).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Simulator seed: the same seed gives the same runs.",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0.1),
    default=4.0,
    show_default=True,
    help="How much faster than real time simulated runs live.",
)
@logging_options
def demo(db_path: str, replace: bool, duration: float | None, seed: int, speed: float) -> None:
    """Run the emulator with simulated runs and watch tag user:1234 replicate live."""
    path = Path(db_path)
    lock = WriterLock(path)
    lock.acquire()  # before anything is removed: a running writer keeps its file
    try:
        _start_afresh(path, replace=replace)
        server = DevServer(simulate=True, seed=seed, speed=speed, port=0).start()
        try:
            click.echo(f"Emulator running at {server.url} with simulated runs (seed {seed}).")
            click.echo(f"Syncing tag {DEMO_TAG} into {path} ... (Ctrl-C to stop)\n")
            asyncio.run(_demo(server, path, duration))
        finally:
            server.stop()
    finally:
        lock.release()
    click.echo(
        f"\nThe replica is an ordinary SQLite file. Try:\n"
        f'  sqlite3 {path} "select status, count(*) from runs group by status"\n'
        f'  replica query --db {path} "select id, status, task_identifier from runs"\n'
        f"  pip install datasette && datasette {path}\n"
        f"Keep it live against your own project with:\n"
        f"  TRIGGER_SECRET_KEY=tr_dev_... replica sync --tag {DEMO_TAG}"
    )


def _start_afresh(path: Path, *, replace: bool) -> None:
    """Remove `path` (and its WAL files) if an earlier demo made it or `replace` says so;
    refuse to touch any other file. The caller holds the writer lock."""
    if not path.exists():
        return
    if not replace and not _made_by_demo(path):
        raise DatabaseError(
            f"{path} exists and was not made by replica demo; it is left as it is",
            hint="pass another --db, or --replace to replace it",
        )
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()


def _made_by_demo(path: Path) -> bool:
    try:
        conn = connect(path, readonly=True)
    except DatabaseError:
        return False  # not a database we can read: not ours
    try:
        return bool(
            conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_replica_demo'"
            ).fetchone()
        )
    except sqlite3.DatabaseError:
        return False
    finally:
        conn.close()


async def _demo(server: DevServer, path: Path, duration: float | None) -> None:
    async with sync_clients() as (client, packets):
        config = TriggerConfig(server.secret_key, api_url=server.url)
        sources = sources_for([Feed(TagSpec((DEMO_TAG,)), config)], client, packets=packets)
        with Store(path, lock=False) as store:  # the demo holds the lock itself
            store.conn.execute("CREATE TABLE IF NOT EXISTS _replica_demo (made_at TEXT NOT NULL)")
            store.conn.execute("INSERT INTO _replica_demo VALUES (?)", (now_iso(),))
            engine = Engine(store, client)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, engine.stop)
            screen = _Screen(path, live=sys.stdout.isatty())
            tasks = [asyncio.create_task(screen.run())]
            if duration is not None:
                tasks.append(asyncio.create_task(_stop_after(engine, duration)))
            try:
                await engine.run(sources, until_stopped=True)
            finally:
                for task in tasks:
                    task.cancel()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
            screen.draw(final=True)
            screen.close()


async def _stop_after(engine: Engine, seconds: float) -> None:
    await asyncio.sleep(seconds)
    engine.stop()


class _Screen:
    """Draws the demo's runs table from the database, in place on a terminal."""

    def __init__(self, path: Path, *, live: bool) -> None:
        self.path = path
        self.live = live
        self._last = ""
        self._lines = 0
        self._conn: sqlite3.Connection | None = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.5 if self.live else 2.0)
            self.draw()

    def _rows(self) -> list[tuple[Any, ...]]:
        if self._conn is None:
            if not self.path.exists():
                return []
            try:
                self._conn = connect(self.path, readonly=True)
            except DatabaseError:
                return []  # not readable yet
        try:
            found = self._conn.execute(
                "SELECT r.id, r.task_identifier, r.status, "
                "json_extract(r.metadata, '$.progress'), r.duration_ms, r.started_at, "
                "r.finished_at FROM runs AS r JOIN run_tags AS t ON t.run_id = r.id "
                "WHERE t.tag = ? ORDER BY r.created_at DESC LIMIT 15",
                (DEMO_TAG,),
            ).fetchall()
        except sqlite3.OperationalError:
            return []  # the schema is not there yet
        out = []
        for run_id, task, status, progress, duration_ms, _started, _finished in found:
            shown = f"{float(progress) * 100:.0f}%" if isinstance(progress, int | float) else ""
            seconds = f"{duration_ms / 1000:.1f} s" if duration_ms else ""
            out.append((run_id, task, status, shown, seconds))
        return out

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def draw(self, *, final: bool = False) -> None:
        rows = self._rows()
        text = render_table(COLUMNS, rows) if rows else "waiting for the first runs..."
        stamp = time.strftime("%H:%M:%S")
        if self.live and not final:
            if self._lines:
                sys.stdout.write(f"\x1b[{self._lines}F\x1b[J")
            block = f"{text}\n{len(rows)} most recent runs tagged {DEMO_TAG} at {stamp}\n"
            sys.stdout.write(block)
            sys.stdout.flush()
            self._lines = block.count("\n")
        elif (text != self._last or final) and (not self.live or final):
            if self._lines:
                sys.stdout.write(f"\x1b[{self._lines}F\x1b[J")
                self._lines = 0
            click.echo(f"[{stamp}]\n{text}")
        self._last = text
