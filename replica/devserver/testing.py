"""Pytest fixtures for code that needs an upstream: a running `DevServer` per test.

Use them from a conftest.py::

    from replica.devserver.testing import devserver, devserver_factory  # noqa: F401

`devserver` is a started server on a free 127.0.0.1 port with a 0.5 s long-poll;
`devserver_factory(**config)` starts more (or differently configured) ones. All are stopped
at the end of the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from replica.devserver.server import DevServer

#: Short enough that tests never wait long on an idle live request.
TEST_LONG_POLL_TIMEOUT = 0.5


@pytest.fixture
def devserver_factory() -> Iterator[Callable[..., DevServer]]:
    """`make(**overrides) -> DevServer`, started; every server made is stopped afterwards."""
    servers: list[DevServer] = []

    def make(**overrides: Any) -> DevServer:
        overrides.setdefault("long_poll_timeout", TEST_LONG_POLL_TIMEOUT)
        server = DevServer(**overrides).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        # Shutting uvicorn down takes ~0.2 s; let it finish while the next test runs.
        server.stop(wait=False)


@pytest.fixture
def devserver(devserver_factory: Callable[..., DevServer]) -> DevServer:
    """A started DevServer with a 0.5 s long-poll timeout and a fresh temporary database."""
    return devserver_factory()
