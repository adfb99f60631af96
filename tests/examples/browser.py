"""Headless Chromium for screenshot tests: found on PATH, else installed from Debian packages.

The package is large (~100 MB with its libraries); it is installed once per machine, by the
first test that needs it. Where it cannot be installed (no apt-get, not root, no network)
the test is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

NAMES = ("chromium", "chromium-browser")

#: Flags that keep Chromium from hanging or phoning home on a closed network: no sandbox
#: (root in a container), no GPU, no /dev/shm, no first-run, sync, component or
#: background network traffic.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", *args],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def chromium() -> str:
    """The Chromium executable, installing the Debian package if it is missing."""
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    if shutil.which("apt-get") is None:
        pytest.skip("no chromium on PATH and no apt-get to install it (install Chromium)")
    if os.geteuid() != 0:
        pytest.skip(
            "no chromium on PATH; installing it needs root: "
            "sudo apt-get install -y --no-install-recommends chromium"
        )
    install = ("install", "-y", "--no-install-recommends", "chromium")
    result = _apt_get(*install)
    if result.returncode != 0:  # package lists missing or stale on a fresh machine
        _apt_get("update")
        result = _apt_get(*install)
    found = shutil.which("chromium")
    if result.returncode != 0 or found is None:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        pytest.skip(f"apt-get install chromium failed: {' / '.join(tail)}")
    return found


def screenshot(
    browser: str, url: str, path: Path, profile: Path, size: tuple[int, int] = (1280, 900)
) -> None:
    """Load `url` in headless Chromium and save a PNG of the window to `path`."""
    result = subprocess.run(
        [
            browser,
            *FLAGS,
            f"--window-size={size[0]},{size[1]}",
            f"--user-data-dir={profile}",
            f"--screenshot={path}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert path.exists(), result.stderr[-2000:]
