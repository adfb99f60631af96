"""Running the Node scripts of tests/node (official Electric and Trigger.dev clients)."""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.exclusive import exclusive
from tests.support.waiting import PATIENCE

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


def ensure_node_modules() -> None:
    """`npm ci` in tests/node when node_modules is missing or older than the lockfile."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm are not installed: the official-client checks need Node.js 20+")
    lock = NODE_DIR / "package-lock.json"
    installed = NODE_DIR / "node_modules" / ".package-lock.json"
    with exclusive("npm-tests-node"):  # test processes side by side install it once
        if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
            return
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
    if result.returncode != 0:
        raise RuntimeError(f"npm ci failed in {NODE_DIR}:\n{result.stderr[-2000:]}")


class NodeScript:
    """A Node script printing JSON lines; stopped by closing its stdin."""

    def __init__(self, script: str, *args: str) -> None:
        self.events: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self.proc = subprocess.Popen(
            ["node", str(NODE_DIR / script), *args],
            cwd=NODE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if line.startswith("{"):
                event = json.loads(line)
                self.events.append(event)
                self._queue.put(event)

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = PATIENCE
    ) -> None:
        """Wait until `predicate(events so far)` holds; fail with the script's output if not."""
        deadline = time.monotonic() + timeout
        while not predicate(self.events):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                self.stop()
                stderr = self.proc.stderr.read() if self.proc.stderr else ""
                last = self.events[-3:]
                raise AssertionError(
                    f"condition not met; last events: {json.dumps(last)[:3000]}\n"
                    f"stderr: {stderr[-3000:]}"
                )
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=min(remaining, 0.2))
        errors = [e for e in self.events if e.get("event") == "error"]
        assert not errors, errors

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (subprocess.TimeoutExpired, OSError):
                self.proc.kill()
                self.proc.wait()

    def run(self, timeout: float = 60) -> dict[str, Any]:
        """For one-shot scripts: wait for exit and return the last JSON line."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        if self.proc.returncode != 0 or not self.events:
            stderr = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"script failed ({self.proc.returncode}): {stderr[-3000:]}")
        return self.events[-1]
