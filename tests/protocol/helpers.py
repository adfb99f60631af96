"""Running a ShapeStream against a scripted server, for the protocol tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from replica.protocol import (
    Backoff,
    Batch,
    Position,
    ShapeDefinition,
    ShapeStream,
    StreamEvent,
    StreamOptions,
)
from replica.protocol.http1 import Http1Client
from tests.support.waiting import PATIENCE

#: Quick retries so tests of failure paths take milliseconds.
FAST = StreamOptions(
    backoff=Backoff(initial=0.001, maximum=0.005), live_timeout=2.0, request_timeout=5.0
)


def items_shape(url: str, **kwargs: Any) -> ShapeDefinition:
    return ShapeDefinition(url=f"{url}/v1/shape", table="items", **kwargs)


class Recorder:
    """Collects events and the delays a stream asked to sleep (without sleeping them)."""

    def __init__(self) -> None:
        self.events: list[StreamEvent] = []
        self.sleeps: list[float] = []

    def on_event(self, event: StreamEvent) -> None:
        self.events.append(event)

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        await asyncio.sleep(0)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


async def take(
    url: str,
    count: int,
    *,
    shape: ShapeDefinition | None = None,
    position: Position | None = None,
    options: StreamOptions = FAST,
    pages: bool = False,
    recorder: Recorder | None = None,
    timeout: float = PATIENCE,
    lean: bool = False,
    **stream_kwargs: Any,
) -> list[Batch]:
    """The first `count` batches (or pages) of a stream, then stop; over httpx, or with
    `lean` over replica's own client."""
    recorder = recorder or Recorder()
    out: list[Batch] = []
    async with contextlib.AsyncExitStack() as stack:
        if lean:
            client: Any = Http1Client()
            stack.push_async_callback(client.aclose)
        else:
            client = await stack.enter_async_context(httpx.AsyncClient())
        stream = ShapeStream(
            shape or items_shape(url),
            client,
            position=position,
            options=options,
            on_event=recorder.on_event,
            sleep=recorder.sleep,
            **stream_kwargs,
        )
        source: AsyncIterator[Batch] = stream.pages() if pages else stream.batches()

        async def run() -> None:
            async for batch in source:
                out.append(batch)
                if len(out) >= count:
                    break
            await source.aclose()  # type: ignore[attr-defined]

        await asyncio.wait_for(run(), timeout)
    return out
