"""`replica dev-server` as a user runs it, in a subprocess."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.support.waiting import wait_for


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replica", *args], capture_output=True, text=True, timeout=60
    )


def test_help_lists_the_options() -> None:
    result = run("dev-server", "--help")
    assert result.returncode == 0
    for option in (
        "--host",
        "--port",
        "--secret-key",
        "--simulate",
        "--seed",
        "--db",
        "--fault",
        "--long-poll-timeout",
        "--rotate-every",
        "--realtime-backend",
        "--handle-window-ttl",
        "--max-list-results",
    ):
        assert option in result.stdout
    assert "dev-server" in run("--help").stdout


def test_bad_fault_spec_is_a_usage_error() -> None:
    result = run("dev-server", "--port", "0", "--fault", "explode")
    assert result.returncode == 2
    assert result.stderr.startswith("Error: ")
    assert "Traceback" not in result.stderr


@pytest.fixture
def serve() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()  # a clean stop removes the server's temporary files
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start(procs: list[subprocess.Popen[str]], *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "replica", "dev-server", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    procs.append(proc)
    assert proc.stdout is not None
    lines: list[str] = []
    while not lines or "Ctrl-C" not in lines[-1]:
        line = proc.stdout.readline()
        assert line, f"dev-server exited: {proc.stderr.read() if proc.stderr else ''}"
        lines.append(line)
    return proc, "".join(lines)


def wait_healthy(url: str) -> None:
    wait_for(
        lambda: httpx.get(f"{url}/_replica/health").status_code == 200,
        what="the dev-server to answer",
    )


def test_startup_prints_url_and_a_generated_key_then_stops_on_sigint(
    serve: list[subprocess.Popen[str]],
) -> None:
    proc, banner = start(serve)
    url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", banner).group(1)
    key = re.search(r"secret key: (tr_dev_\S+)", banner).group(1)
    assert f"TRIGGER_API_URL={url} TRIGGER_SECRET_KEY={key}" in banner
    wait_healthy(url)
    auth = {"authorization": f"Bearer {key}"}
    assert httpx.get(f"{url}/_replica/info", headers=auth).status_code == 200
    assert httpx.get(f"{url}/_replica/info").status_code == 401
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0


def test_given_key_and_simulation(serve: list[subprocess.Popen[str]]) -> None:
    proc, banner = start(
        serve, "--secret-key", "tr_dev_given", "--simulate", "--speed", "20", "--seed", "7"
    )
    assert "secret key: tr_dev_given" in banner
    assert "simulating runs (seed 7" in banner
    url = re.search(r"listening on (\S+)", banner).group(1)
    wait_healthy(url)
    auth = {"authorization": "Bearer tr_dev_given"}
    runs = httpx.get(f"{url}/_replica/runs", headers=auth).json()["runs"]
    assert len(runs) >= 5  # the opening burst
    assert any("user:1234" in (r["runTags"] or "") for r in runs)
    proc.terminate()
    assert proc.wait(timeout=10) == 0


def test_native_realtime_backend_and_its_settings(serve: list[subprocess.Popen[str]]) -> None:
    proc, banner = start(
        serve,
        "--secret-key",
        "tr_dev_given",
        "--realtime-backend",
        "native",
        "--handle-window-ttl",
        "60",
        "--max-list-results",
        "5",
    )
    assert "realtime feeds served like Trigger.dev's native backend" in banner
    url = re.search(r"listening on (\S+)", banner).group(1)
    wait_healthy(url)
    auth = {"authorization": "Bearer tr_dev_given"}
    config = httpx.get(f"{url}/_replica/info", headers=auth).json()["config"]
    assert config["realtime_backend"] == "native"
    assert config["handle_window_ttl"] == 60
    assert config["native_max_list_results"] == 5
    feed = httpx.get(
        f"{url}/realtime/v1/runs",
        params={"tags": "x", "offset": "-1"},
        headers={**auth, "x-trigger-electric-version": "1.0.0-beta.1"},
    )
    assert feed.headers["electric-handle"].startswith("runs_")
    proc.terminate()
    assert proc.wait(timeout=10) == 0


def test_unknown_realtime_backend_is_a_usage_error() -> None:
    result = run("dev-server", "--port", "0", "--realtime-backend", "shadow")
    assert result.returncode == 2
    assert "Error: Invalid value for '--realtime-backend'" in result.stderr


def test_port_in_use_is_a_clear_error(serve: list[subprocess.Popen[str]]) -> None:
    _proc, banner = start(serve)
    port = re.search(r":(\d+)\n", banner).group(1)
    result = run("dev-server", "--port", port)
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: cannot listen on 127.0.0.1:{port}")
