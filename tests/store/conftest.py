"""Fixtures: a writer Store on a fresh file, closed after each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from replica.store import Store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "replica.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store(db_path) as opened:
        yield opened


@pytest.fixture
def tag_shape(store: Store) -> int:
    return store.register_shape("tag:a", kind="tag", target="runs").id
