"""`replica sync`'s feedback says a shape is up to date when it becomes so, not at the next
periodic report (10 s apart when logs go to a file)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest

import replica
from replica.commands.progress import Progress
from replica.devserver import DevServer
from replica.devserver.testing import devserver, devserver_factory  # noqa: F401
from replica.engine import Engine
from replica.sources.subscriptions import sources_for
from replica.store import Store


def test_up_to_date_is_said_when_it_happens(
    tmp_path: Path,
    devserver: DevServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    devserver.trigger("send-email", {}, tags=["user:1"])
    feed = replica.tag("user:1", token=devserver.secret_key, api_url=devserver.url)

    async def main() -> None:
        async with httpx.AsyncClient() as client:
            with Store(tmp_path / "r.db") as store:
                engine = Engine(store, client, once=True)
                # Its periodic reports never come: only the engine's word can log it.
                Progress(engine, live_line=False, interval=3600)
                await engine.run(sources_for([feed], client))

    with caplog.at_level(logging.INFO, logger="replica.sync"):
        asyncio.run(main())
    assert "tag user:1: up to date, 1 rows" in caplog.messages
