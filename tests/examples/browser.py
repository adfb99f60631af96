"""Headless Chromium for screenshot tests: found on PATH, else installed from Debian packages.

The package is large (~100 MB with its libraries); it is installed once per machine, by the
first test that needs it. Where it cannot be installed (no apt-get, not root, no network)
the test is skipped with the reason.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.packages import PackageUnavailable, apt_install

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


def chromium() -> str:
    """The Chromium executable, installing the Debian package if it is missing (the test is
    skipped, with the reason, where it cannot be installed)."""
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    try:
        return apt_install("chromium", "chromium")
    except PackageUnavailable as exc:
        pytest.skip(f"no chromium on PATH: {exc}")


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
