"""Debian packages a test needs (nginx, Chromium, envsubst), installed when missing, as the
CI machine is set up: root, Debian's registry, maybe no package lists yet."""

from __future__ import annotations

import os
import shutil
import subprocess

from tests.support.exclusive import exclusive


class PackageUnavailable(Exception):
    """A program is not installed and cannot be installed here; the message says why."""


def installed(binary: str) -> str | None:
    """The path of `binary`, if it is installed (/usr/sbin is not on every user's PATH)."""
    return shutil.which(binary) or next(
        (
            path
            for path in (f"/usr/sbin/{binary}", f"/usr/local/sbin/{binary}")
            if os.access(path, os.X_OK)
        ),
        None,
    )


def apt_install(package: str, binary: str) -> str:
    """The path of `binary`, installing Debian's `package` with apt-get when it is missing;
    `PackageUnavailable` when that cannot be done. One installation at a time: test
    processes running side by side would fight over dpkg's lock."""
    with exclusive("apt"):
        found = installed(binary)
        if found:
            return found
        if shutil.which("apt-get") is None:
            raise PackageUnavailable(
                f"{binary} is not installed and there is no apt-get to install it"
            )
        if os.geteuid() != 0:
            raise PackageUnavailable(
                f"{binary} is not installed; as root: apt-get install -y {package}"
            )
        install = ["apt-get", "install", "-y", "--no-install-recommends", package]
        result = _apt_get(install)
        if result.returncode != 0:  # a fresh machine has no package lists yet
            _apt_get(["apt-get", "update"])
            result = _apt_get(install)
        found = installed(binary)
        if result.returncode != 0 or found is None:
            output = (result.stderr or result.stdout)[-2000:]
            raise PackageUnavailable(f"apt-get install {package} failed:\n{output}")
        return found


def _apt_get(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
