"""Waiting for states, never for durations: poll a condition until it holds.

The bound of every wait is a safety net that ends a test which would otherwise hang, never
a claim about speed: a loaded 2-core machine may take many times longer than a laptop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from replica import Replica

#: How long a wait may take before the test fails: generous on purpose.
PATIENCE = 120.0

#: Raised while a state is still coming: a file or table not created yet, a server not
#: listening yet, a line half written.
NOT_YET = (sqlite3.Error, OSError, ValueError, httpx.TransportError)


def wait_for(predicate: Callable[[], Any], timeout: float = PATIENCE, what: str = "it") -> Any:
    """Poll `predicate` until it is truthy and return its value (`NOT_YET` errors count as
    not yet)."""
    for value in _answers(predicate, timeout, what):
        if value:
            return value
        time.sleep(0.05)


async def wait_for_async(
    predicate: Callable[[], Any], timeout: float = PATIENCE, what: str = "it"
) -> Any:
    """`wait_for` inside an event loop: the loop runs between the polls."""
    for value in _answers(predicate, timeout, what):
        if value:
            return value
        await asyncio.sleep(0.01)


def listen_until(
    db: Replica, done: Callable[[], Any], timeout: float = PATIENCE, what: str = "it"
) -> None:
    """`db.listen()` until `done()` holds (asked every few milliseconds from a thread of
    its own); fails if it never does. The test then checks what the callbacks saw."""
    listening = threading.Event()
    listening.set()
    watcher = threading.Thread(target=_stop_when, args=(db, done, listening), daemon=True)
    watcher.start()
    try:
        db.listen(timeout=timeout)
    finally:
        listening.clear()
        watcher.join()
    if not _ask(done):
        raise AssertionError(f"timed out after {timeout:.0f} s listening for {what}")


async def alisten_until(
    db: Replica, done: Callable[[], Any], timeout: float = PATIENCE, what: str = "it"
) -> None:
    """`listen_until` for `db.alisten()`."""
    listening = asyncio.create_task(db.alisten(timeout=timeout))
    while not listening.done():
        if _ask(done):
            db.stop()
        await asyncio.wait({listening}, timeout=0.02)
    await listening
    if not _ask(done):
        raise AssertionError(f"timed out after {timeout:.0f} s listening for {what}")


def _stop_when(db: Replica, done: Callable[[], Any], listening: threading.Event) -> None:
    # A stop() before listen() has started is not remembered: ask again until it returns.
    while listening.is_set():
        if _ask(done):
            db.stop()
        time.sleep(0.02)


def _answers(predicate: Callable[[], Any], timeout: float, what: str) -> Iterator[Any]:
    """`predicate`'s answers, one per step of the caller's loop, until `timeout` s are up."""
    deadline = time.monotonic() + timeout
    while True:
        yield _ask(predicate)
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _ask(predicate: Callable[[], Any]) -> Any:
    try:
        return predicate()
    except NOT_YET:
        return None
