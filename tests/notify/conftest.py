"""Fixtures of the notify tests: a writer and a Replica on the `store` fixture's file
(tests/support/fixtures.py), the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from replica.api import Replica
from replica.devserver.testing import devserver, devserver_factory  # noqa: F401
from replica.store import Store

from .helpers import Writer


@pytest.fixture
def writer(store: Store) -> Writer:
    return Writer(store)


@pytest.fixture
def db(db_path: Path, store: Store) -> Iterator[Replica]:
    """A Replica on the store's file (fast polling: tests need not wait for file events)."""
    with Replica(db_path, poll_interval=0.05) as opened:
        yield opened
