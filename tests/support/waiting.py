"""Waiting for states, never for durations: poll a condition until it holds.

The bound of every wait is a safety net that ends a test which would otherwise hang, never
a claim about speed: a loaded 2-core machine may take many times longer than a laptop.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

import httpx

#: How long a wait may take before the test fails: generous on purpose.
PATIENCE = 120.0

#: Raised while a state is still coming: a file or table not created yet, a server not
#: listening yet, a line half written.
NOT_YET = (sqlite3.Error, OSError, ValueError, httpx.TransportError)


def wait_for(predicate: Callable[[], Any], timeout: float = PATIENCE, what: str = "it") -> Any:
    """Poll `predicate` until it is truthy and return its value (`NOT_YET` errors count as
    not yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except NOT_YET:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
