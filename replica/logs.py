"""Logging for the command line: plain or JSON lines, and secrets scrubbed from both."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable

_QUIET = ("httpx", "httpcore", "uvicorn.access", "watchfiles", "asyncio")


class RedactSecrets(logging.Filter):
    """Replaces every occurrence of the given secrets in log records with `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = {s for s in secrets if s and len(s) >= 4}

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 4:
            self.secrets.add(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            scrubbed = message
            for secret in self.secrets:
                scrubbed = scrubbed.replace(secret, "***")
            if scrubbed != message:
                record.msg, record.args = scrubbed, None
            if record.exc_info and record.exc_info[1] is not None:
                text = logging.Formatter().formatException(record.exc_info)
                for secret in self.secrets:
                    text = text.replace(secret, "***")
                record.exc_text, record.exc_info = text, None
        return True


class JsonLines(logging.Formatter):
    """One JSON object per record: ts, level, logger, message (and error, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["error"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


#: The filter every handler of the CLI carries; secrets are added as they become known.
redactor = RedactSecrets()


def configure(*, debug: bool = False, json_lines: bool = False) -> None:
    """Send logs to stderr: INFO (DEBUG with `debug`), as text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(redactor)
    if json_lines:
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # Other libraries' request logs would repeat URLs we already log (redacted) at DEBUG.
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
