"""Fixtures of the dev-server tests: a running emulator and an httpx client for it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from replica.devserver import DevServer
from replica.devserver.testing import devserver, devserver_factory  # noqa: F401


@pytest.fixture
def client(devserver: DevServer) -> Iterator[httpx.Client]:  # noqa: F811
    with httpx.Client(base_url=devserver.url, timeout=15) as c:
        yield c


@pytest.fixture
def items(devserver: DevServer) -> DevServer:  # noqa: F811
    """The server with a small `items` table (id int4 PK, title text, done bool, n int4)."""
    devserver.define_table(
        "items", {"id": "int4", "title": "text", "done": "bool", "n": "int4"}, primary_key="id"
    )
    devserver.insert(
        "items",
        {"id": 1, "title": "one", "done": False, "n": 10},
        {"id": 2, "title": "two", "done": True, "n": 20},
        {"id": 3, "title": "three", "done": False, "n": 30},
    )
    return devserver
