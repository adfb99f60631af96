"""Running the `replica` command in subprocesses against a live emulator."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from replica.devserver import DevServer
from replica.devserver.testing import devserver, devserver_factory  # noqa: F401
from tests.support.waiting import wait_for


class Replica:
    """`replica ...` in a temporary directory, pointed at one emulator."""

    def __init__(self, cwd: Path, server: DevServer) -> None:
        self.cwd = cwd
        self.server = server
        self.db = cwd / "replica.db"
        self.env = {
            **os.environ,
            "TRIGGER_SECRET_KEY": server.secret_key,
            "TRIGGER_API_URL": server.url,
            "REPLICA_DB": str(self.db),
            "PYTHONUNBUFFERED": "1",
        }
        for name in ("TRIGGER_ACCESS_TOKEN", "TRIGGER_PREVIEW_BRANCH", "ELECTRIC_SECRET"):
            self.env.pop(name, None)
        self.procs: list[subprocess.Popen[str]] = []

    def run(
        self,
        *args: str,
        timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "replica", *args],
            cwd=self.cwd,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "replica", *args],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    #: The suite's one wait (tests/support/waiting.py), at hand beside the fixture.
    wait_for = staticmethod(wait_for)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)


@pytest.fixture
def replica_cli(tmp_path: Path, devserver: DevServer) -> Iterator[Replica]:  # noqa: F811
    cli = Replica(tmp_path, devserver)
    yield cli
    cli.stop_all()


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single `Error:` line a failing command must print (and nothing like a traceback)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]
