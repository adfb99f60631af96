"""Fixtures of the store tests: a tag shape registered in the `store` fixture's file
(tests/support/fixtures.py)."""

from __future__ import annotations

import pytest

from replica.store import Store


@pytest.fixture
def tag_shape(store: Store) -> int:
    return store.register_shape("tag:a", kind="tag", target="runs").id
