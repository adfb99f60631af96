"""nginx from Debian's packages, run as this user in a temporary directory with a config made
from a template of examples/fleet/ (the http-level part users start from)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from tests.examples.helpers import free_port
from tests.support.packages import apt_install

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "examples" / "fleet"
#: Proxy holds the token / replicas hold their own, keyed on it.
TOKEN_AT_PROXY = TEMPLATES / "nginx.conf"
TOKEN_PER_REPLICA = TEMPLATES / "nginx-per-token.conf"

_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
#: One access-log line per request: what the cache did, the status, the URI asked.
_LOG_FORMAT = "'$upstream_cache_status $status $request_uri'"


def install_nginx() -> str:
    """The nginx binary, installed from Debian's packages when missing
    (`PackageUnavailable` when it cannot be)."""
    return apt_install("nginx", "nginx")


def render(template: Path, values: Mapping[str, str]) -> str:
    """The template with its `${NAME}` placeholders filled in, as `envsubst 'NAMES'` does;
    nginx's own `$variables` are left alone. Every placeholder must have a value."""
    text = template.read_text()
    missing = sorted(set(_PLACEHOLDER.findall(text)) - set(values))
    if missing:
        raise KeyError(f"{template.name} needs values for {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


class Nginx:
    """One nginx (master + one worker, not a daemon) serving `template` in front of
    `upstream`, with its pid, logs, temporary files and cache under `workdir`."""

    def __init__(
        self,
        binary: str,
        template: Path,
        upstream: str,
        workdir: Path,
        token: str | None = None,
    ) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_log = workdir / "access.log"
        self.error_log = workdir / "error.log"
        values = {
            "LISTEN": f"127.0.0.1:{self.port}",
            "UPSTREAM": upstream,
            "CACHE_DIR": str(workdir / "cache"),
        }
        if token is not None:
            values["TRIGGER_ACCESS_TOKEN"] = token
        (workdir / "tmp").mkdir(parents=True, exist_ok=True)
        (workdir / "fleet.conf").write_text(render(template, values))
        self.config = workdir / "nginx.conf"
        self.config.write_text(self._main_config())
        self.proc: subprocess.Popen[bytes] | None = None

    def _main_config(self) -> str:
        d = self.workdir
        temp_paths = "\n".join(
            f"    {kind}_temp_path {d / 'tmp' / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        return f"""pid {d / "nginx.pid"};
error_log {self.error_log} warn;
worker_processes 1;
worker_rlimit_nofile 8192;
events {{ worker_connections 4096; }}
http {{
    log_format fleet {_LOG_FORMAT};
    access_log {self.access_log} fleet;
{temp_paths}
    include {d / "fleet.conf"};
}}
"""

    def start(self, timeout: float = 30.0) -> Nginx:
        """Start and return once the port accepts connections (or fail with nginx's log)."""
        args = [self.binary, "-p", str(self.workdir), "-c", str(self.config), "-e", "stderr"]
        directives = "daemon off;"
        if os.geteuid() == 0:
            # A root master hands requests to workers running as `nobody`, who could not
            # write to this user's temporary directory.
            directives += " user root;"
        test = subprocess.run([*args, "-t", "-g", directives], capture_output=True, text=True)
        if test.returncode != 0:
            raise RuntimeError(f"nginx refuses the config:\n{test.stderr}")
        log = open(self.workdir / "stderr.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen([*args, "-g", directives], stdout=log, stderr=log)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while not self._accepting():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not start:\n{self.logs()}")
            time.sleep(0.02)
        return self

    def _accepting(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Fast shutdown (SIGTERM): open long-polls are cut, replicas see a dropped request."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)

    def logs(self) -> str:
        parts = [
            p.read_text(errors="replace")[-3000:]
            for p in (self.workdir / "stderr.log", self.error_log)
            if p.exists()
        ]
        return "\n".join(parts)

    def cache_statuses(self) -> list[tuple[str, int, str]]:
        """(cache status, HTTP status, URI) of every request answered so far."""
        if not self.access_log.exists():
            return []
        lines = []
        for line in self.access_log.read_text(errors="replace").splitlines():
            cache, status, uri = line.split(" ", 2)
            lines.append((cache, int(status), uri))
        return lines
