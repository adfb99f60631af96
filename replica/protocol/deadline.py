"""Awaiting with a deadline without ever losing a cancellation.

`asyncio.wait_for` before Python 3.12 can swallow a cancellation: when the awaited thing
finishes in the same loop iteration as the cancel, it returns the result and the caller
carries on as if never cancelled. For a shape stream whose upstream answers at once, that
meant `Engine.stop()` could leave a subscription looping forever. `within` waits with
`asyncio.wait`, which always lets the caller's cancellation through.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(awaitable: Awaitable[T], seconds: float | None) -> T:
    """The result of `awaitable`, or `asyncio.TimeoutError` after `seconds` (it is then
    cancelled; None waits for as long as it takes). Cancelling the caller cancels
    `awaitable` too and always raises."""
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        await _cancel(task)
        raise
    if not done:
        await _cancel(task)
        raise asyncio.TimeoutError
    return task.result()


async def _cancel(task: asyncio.Future[T]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
