"""Fixtures of the fleet tests: nginx (installed from Debian's packages when missing), nginx
servers in front of an emulator, fleets of `replica sync` processes; all stopped afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from replica.devserver.testing import devserver, devserver_factory  # noqa: F401
from tests.support.packages import PackageUnavailable

from .fleet import Fleet
from .nginx import Nginx, install_nginx


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    try:
        return install_nginx()
    except PackageUnavailable as exc:
        pytest.skip(f"the fleet tests need nginx: {exc}")


@pytest.fixture
def nginx_factory(nginx_binary: str, tmp_path: Path) -> Iterator[Callable[..., Nginx]]:
    """`make(template, upstream, token=None) -> Nginx`, started."""
    servers: list[Nginx] = []

    def make(template: Path, upstream: str, token: str | None = None) -> Nginx:
        server = Nginx(nginx_binary, template, upstream, tmp_path / f"nginx-{len(servers)}", token)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def fleet_factory(tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    """`make(api_url=..., token=..., tag=...) -> Fleet` (no replica started yet)."""
    fleets: list[Fleet] = []

    def make(*, api_url: str, token: str, tag: str) -> Fleet:
        fleet = Fleet(tmp_path / f"fleet-{len(fleets)}", api_url=api_url, token=token, tag=tag)
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop()
