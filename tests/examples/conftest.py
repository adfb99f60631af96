"""Fixtures of the example tests: one emulator per module, subprocesses cleaned up.

Each test uses tags of its own, so tests of a module share the emulator without seeing
each other's runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from replica.devserver import DevServer
from replica.devserver.testing import TEST_LONG_POLL_TIMEOUT

from .helpers import Process


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    """One emulator for the module (starting one per test costs ~0.3 s each)."""
    started = DevServer(long_poll_timeout=TEST_LONG_POLL_TIMEOUT).start()
    yield started
    started.stop(wait=False)


@pytest.fixture
def processes() -> Iterator[Callable[..., Process]]:
    """`start(args, env=..., cwd=...)`; every process still running is killed afterwards."""
    started: list[Process] = []

    def start(args: list[str], *, env: dict[str, str], cwd: Path) -> Process:
        process = Process(args, env=env, cwd=cwd)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
