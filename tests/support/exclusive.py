"""One test process at a time: the suite runs in several worker processes (pytest-xdist),
and some set-up steps (`npm ci`, `apt-get install`) must not run twice at once."""

from __future__ import annotations

import fcntl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive(name: str) -> Iterator[None]:
    """Hold the machine-wide lock `name` (a file lock in the temporary directory)."""
    path = Path(tempfile.gettempdir()) / f"replica-tests-{name}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
