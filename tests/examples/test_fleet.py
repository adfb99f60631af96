"""examples/fleet: the README's commands, run as written (its paths and port moved to this
test's own), start nginx in front of the emulator and three replicas without a token behind
it. How a fleet behaves through the configs is tests/fleet/."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from replica.devserver import DevServer
from tests.fleet.nginx import install_nginx
from tests.support.packages import PackageUnavailable, apt_install
from tests.support.waiting import wait_for

from .helpers import EXAMPLES, free_port, query

README = EXAMPLES / "fleet" / "README.md"
ROOT = EXAMPLES.parent


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)


@pytest.fixture
def shells() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Shells started by the test, each in a session of its own: ended with all they started."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for shell in started:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGTERM)
            shell.wait(15)


def test_the_readme_starts_nginx_and_replicas_behind_it(
    server: DevServer, tmp_path: Path, shells: list[subprocess.Popen[bytes]]
) -> None:
    try:
        nginx = install_nginx()
        apt_install("gettext-base", "envsubst")
    except PackageUnavailable as exc:
        pytest.skip(f"the example needs nginx and envsubst: {exc}")
    wanted = {server.trigger("send-email", {"n": n}, tags=["user:1234"]) for n in range(3)}
    port = free_port()
    workdir = tmp_path / "fleet"
    env = {
        **os.environ,
        "TRIGGER_API_URL": server.url,
        "TRIGGER_SECRET_KEY": server.secret_key,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), str(Path(nginx).parent)])
        + os.pathsep
        + os.environ.get("PATH", ""),
    }
    env.pop("TRIGGER_ACCESS_TOKEN", None)
    _install, start_nginx, start_replicas = (
        block.replace("/tmp/fleet", str(workdir)).replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        for block in shell_blocks()
    )
    for block in (start_nginx, start_replicas + "wait\n"):
        with open(tmp_path / f"shell-{len(shells)}.log", "ab") as log:
            shells.append(
                subprocess.Popen(
                    ["bash", "-ec", block],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        if block is start_nginx:
            wait_for(lambda: _listening(port), what="nginx")

    dbs = [workdir / f"replica-{i}.db" for i in (1, 2, 3)]
    wait_for(
        lambda: all({r[0] for r in query(db, "SELECT id FROM runs")} == wanted for db in dbs),
        what="three replicas holding the runs",
    )
    # Three replicas, one snapshot request upstream; their requests in nginx's log.
    assert server.request_counts().counts["/realtime/v1/runs"]["initial"] < 3
    assert "/realtime/v1/runs?" in (workdir / "access.log").read_text()


def _listening(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), 1):
        return True
