"""The sources layer against the project's own emulator: a tag feed with an offloaded payload,
followed with the real protocol client and mapped into runs rows."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from replica.devserver.server import DevServer
from replica.protocol import Position, ShapeStream
from replica.sources import PacketFetcher, RunMapper, TriggerConfig, tag_shape

pytestmark = pytest.mark.anyio


async def test_tag_feed_from_the_dev_server() -> None:
    with DevServer(payload_offload_threshold=200, long_poll_timeout=0.5) as dev:
        big = {"rows": list(range(200))}
        offloaded = dev.trigger("import", big, tags=["user:1", "org:2"])
        small = dev.trigger("small", {"a": 1}, tags=["user:1"])
        dev.start_run(small)
        dev.complete_run(small, {"ok": True})
        dev.set_metadata(offloaded, {"progress": 0.5})
        assert dev.run(offloaded)["payloadType"] == "application/store"
        config = TriggerConfig(dev.secret_key, api_url=dev.url)
        rows: dict[str, dict[str, Any]] = {}
        async with httpx.AsyncClient() as client:
            mapper = RunMapper(PacketFetcher(client, config.api_url, config.headers()))
            stream = ShapeStream(tag_shape(config, ["user:1"]), client, position=Position())
            async for page in stream.pages():
                for change in await mapper.map(page.changes):
                    rows.setdefault(change.values.get("id", change.key), {}).update(change.values)
                if page.up_to_date:
                    break
    first, second = rows[offloaded], rows[small]
    assert json.loads(first["payload"]) == big and first["payload_ref"] is None
    assert first["status"] == "QUEUED" and json.loads(first["metadata"]) == {"progress": 0.5}
    assert json.loads(first["tags"]) == ["user:1", "org:2"]
    assert second["status"] == "COMPLETED" and json.loads(second["output"]) == {"ok": True}
    assert second["finished_at"].endswith("Z") and len(second["finished_at"]) == 24
