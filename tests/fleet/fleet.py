"""A fleet of `replica sync` processes on one tag, each with its own database, and what their
databases hold."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replica.devserver import DevServer

#: The columns compared between replicas: everything a reader of `runs` sees change.
COMPARED = (
    "id, task_identifier, status, payload, output, metadata, error, tags, "
    "updated_at, started_at, finished_at"
)

Rows = frozenset[tuple[Any, ...]]


def replica_env(api_url: str, token: str) -> dict[str, str]:
    """This process's environment pointed at `api_url` with `token`, no other credential."""
    env = {**os.environ, "TRIGGER_API_URL": api_url, "TRIGGER_ACCESS_TOKEN": token}
    for name in ("TRIGGER_SECRET_KEY", "TRIGGER_PREVIEW_BRANCH", "ELECTRIC_SECRET", "REPLICA_DB"):
        env.pop(name, None)
    return env


def sync_once(api_url: str, token: str, tag: str, db: Path) -> subprocess.CompletedProcess[str]:
    """`replica sync --tag TAG --once` into `db`: exits when the feed is up to date (0) or
    has failed (1)."""
    return subprocess.run(
        [sys.executable, "-m", "replica", "sync", "--tag", tag, "--db", str(db), "--once"],
        env=replica_env(api_url, token),
        capture_output=True,
        text=True,
        timeout=120,
    )


def sync_directly(server: DevServer, tag: str, db: Path) -> Rows:
    """A replica made without the proxy: the reference the fleet is compared with."""
    result = sync_once(server.url, server.secret_key, tag, db)
    assert result.returncode == 0, result.stderr
    return runs_of(db)


def runs_of(db: Path) -> Rows:
    """The runs a replica file holds now (empty while the file is being created)."""
    if not db.exists():
        return frozenset()
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            rows = conn.execute(f"SELECT {COMPARED} FROM runs WHERE detached_at IS NULL")
            return frozenset(rows.fetchall())
        finally:
            conn.close()
    except sqlite3.OperationalError:  # no runs table yet
        return frozenset()


def metadata_history(db: Path, run_id: str) -> list[Any]:
    """Every `metadata` value the replica held for a run, oldest first, from its change log."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        entries = conn.execute(
            "SELECT op, changed, old FROM _replica_changes WHERE tbl = 'runs' AND key = ? "
            "ORDER BY seq",
            (run_id,),
        ).fetchall()
        (current,) = conn.execute("SELECT metadata FROM runs WHERE id = ?", (run_id,)).fetchone()
    finally:
        conn.close()
    history = []
    for op, changed, old in entries:
        if op == "update" and "metadata" in json.loads(changed or "[]"):
            history.append(json.loads(old)["metadata"])
    history.append(current)
    return [json.loads(value) if value is not None else None for value in history]


@dataclass
class Member:
    """One `replica sync` process and its database."""

    db: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def rows(self) -> Rows:
        return runs_of(self.db)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


class Fleet:
    """`replica sync --tag TAG` processes started together, each with its own `--db`."""

    def __init__(self, workdir: Path, *, api_url: str, token: str, tag: str) -> None:
        self.workdir = workdir
        self.env = replica_env(api_url, token)
        self.tag = tag
        self.members: list[Member] = []
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self, count: int) -> list[Member]:
        """Start `count` more replicas at once (no waiting for each one to be up)."""
        started = []
        for _ in range(count):
            n = len(self.members)
            db, log = self.workdir / f"replica-{n}.db", self.workdir / f"replica-{n}.log"
            out = open(log, "ab")  # noqa: SIM115 - handed to the child, closed below
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "replica", "sync", "--tag", self.tag, "--db", str(db)],
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            finally:
                out.close()
            member = Member(db, log, proc)
            self.members.append(member)
            started.append(member)
        return started

    def stop(self) -> None:
        for member in self.members:
            if member.proc.poll() is None:
                member.proc.send_signal(signal.SIGTERM)
        for member in self.members:
            try:
                member.proc.wait(30)
            except subprocess.TimeoutExpired:
                member.proc.kill()
                member.proc.wait(15)

    def wait_until(
        self,
        holds: Callable[[Member], bool],
        what: str,
        timeout: float,
        members: Sequence[Member] | None = None,
    ) -> None:
        """Wait until `holds(member)` for every member (a state, checked over and over);
        `timeout` only bounds a run that has gone wrong. A member that exits fails it."""
        pending = list(self.members if members is None else members)
        deadline = time.monotonic() + timeout
        while pending:
            pending = [m for m in pending if not holds(m)]
            for member in pending:
                if member.proc.poll() is not None:
                    raise AssertionError(
                        f"{member.db.name} exited ({member.proc.returncode}) before {what}:\n"
                        f"{member.output()}"
                    )
            if pending and time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(pending)} of {len(self.members)} replicas not there after "
                    f"{timeout:.0f} s: {what}; the first one's log:\n{pending[0].output()}"
                )
            time.sleep(0.2)
