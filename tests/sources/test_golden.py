"""Golden tests: the fixture rows of trigger-realtime.md §6 against the outcomes of §6.6.

Bodies are parsed by the protocol layer with the §6.1 schema (and, to show leniency, with no
schema at all: every value a string). Row B's offloaded payload is fetched from a scripted
server on 127.0.0.1 serving both packets routes and the presigned download.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from replica.sources import PacketFetcher, RunMapper
from replica.tables import RUNS, RowChange
from tests.sources.helpers import (
    B_PATH,
    B_PAYLOAD,
    ROW_A,
    ROW_B,
    ROW_D,
    ROW_E,
    PacketsServer,
    b_objects,
    changes,
    flags,
)
from tests.support.scripted_server import Reply, Request, ScriptedServer

pytestmark = pytest.mark.anyio


def decoded(values: dict[str, Any], column: str) -> Any:
    text = values[column]
    return None if text is None else json.loads(text)


async def mapped(
    name: str, mapper: RunMapper | None = None, *, typed: bool = True
) -> list[RowChange]:
    return await (mapper or RunMapper()).map(changes(name, typed=typed))


@pytest.fixture(params=[True, False], ids=["schema", "raw-strings"])
def typed(request: pytest.FixtureRequest) -> bool:
    return request.param


@pytest.fixture
async def packets() -> AsyncIterator[tuple[PacketsServer, ScriptedServer, PacketFetcher]]:
    handler = PacketsServer(b_objects())
    async with ScriptedServer(handler) as server, httpx.AsyncClient() as client:
        handler.base = server.url
        yield (
            handler,
            server,
            PacketFetcher(client, server.url, {"Authorization": "Bearer t"}, initial_delay=0.001),
        )


async def test_row_a_queued_with_a_superjson_payload(typed: bool) -> None:
    a, _ = await mapped("tag_snapshot", typed=typed)
    assert (a.op, a.key) == ("insert", ROW_A)
    v = a.values
    assert v["id"] == "run_cmek7q1xv0003l50ahz2b9r4d" and v["internal_id"] == ROW_A
    assert v["status"] == "QUEUED" and v["db_status"] == "PENDING"
    assert flags(v["status"]) == {"isQueued"}
    assert decoded(v, "payload") == {
        "reportId": "rep_8812",
        "format": "pdf",
        "requestedAt": "2026-08-20T09:14:03.401Z",  # the Date, stored as ISO UTC
    }
    assert v["payload_type"] == "application/super+json" and v["payload_ref"] is None
    assert decoded(v, "tags") == ["user:user_42", "report:rep_8812"]
    assert decoded(v, "realtime_streams") == []
    assert (v["duration_ms"], v["number"], v["is_test"], v["ttl"]) == (0, 1843, 0, "10m")
    assert (v["cost_in_cents"], v["base_cost_in_cents"]) == (0.0, 0.0)
    assert v["metadata"] is None and v["output"] is None and v["error"] is None
    assert v["finished_at"] is None and v["started_at"] is None
    assert v["created_at"] == v["queued_at"] == "2026-08-20T09:14:03.512Z"
    assert v["updated_at"] == "2026-08-20T09:14:03.547Z"
    assert "idempotency_key" not in v and "detached_at" not in v
    assert set(v) <= set(RUNS.column_names)


async def test_row_b_executing_with_an_offloaded_payload(typed: bool, packets: Any) -> None:
    _, server, fetcher = packets
    _, b = await mapped("tag_snapshot", RunMapper(fetcher), typed=typed)
    assert b.key == ROW_B
    v = b.values
    assert v["id"] == "run_cmek7r9kd0009l50a7c3q1m2w"
    assert v["status"] == "EXECUTING" and flags(v["status"]) == {"isExecuting"}
    assert decoded(v, "payload") == B_PAYLOAD
    assert v["payload_type"] == "application/json" and v["payload_ref"] is None
    assert decoded(v, "metadata") == {
        "status": "processing",
        "progress": 0.42,
        "processedRows": 4200,
        "totalRows": 10000,
        "logs": ["Downloaded file", "Parsed header"],
    }
    assert decoded(v, "tags") == ["user:user_42", "file:q3 sales.csv"]
    assert decoded(v, "realtime_streams") == ["rows"]
    assert (v["cost_in_cents"], v["base_cost_in_cents"], v["duration_ms"]) == (
        0.38571,
        0.0025,
        48213,
    )
    assert (
        v["started_at"] == "2026-08-20T09:15:11.930Z"
        and v["created_at"] == "2026-08-20T09:15:10.020Z"
    )
    assert v["finished_at"] is None
    api, download = server.requests
    assert api.path == "/api/v1/runs/run_cmek7r9kd0009l50a7c3q1m2w/packets/payload"
    assert api.headers["authorization"] == "Bearer t"
    assert download.path == f"/objects/{B_PATH}" and "authorization" not in download.headers


async def test_row_b_through_the_older_packets_route(packets: Any) -> None:
    handler, server, fetcher = packets
    handler.run_route = False
    _, b = await mapped("tag_snapshot", RunMapper(fetcher))
    assert decoded(b.values, "payload") == B_PAYLOAD
    assert [r.target.split("?")[0] for r in server.requests] == [
        "/api/v1/runs/run_cmek7r9kd0009l50a7c3q1m2w/packets/payload",
        "/api/v1/packets/run_cmek7r9kd0009l50a7c3q1m2w%2Fpayload.json",
        f"/objects/{B_PATH}",
    ]


async def test_a_resent_row_does_not_download_again(packets: Any) -> None:
    _, server, fetcher = packets
    mapper = RunMapper(fetcher)
    await mapped("tag_snapshot", mapper)
    # The native backend re-sends full rows (as updates); a 409 replays the snapshot.
    resent = changes("tag_snapshot")
    for change in resent:
        change.operation = "update"
    _, b = await mapper.map(resent)
    assert decoded(b.values, "payload") == B_PAYLOAD and b.values["payload_ref"] is None
    assert len(server.requests) == 2


async def test_row_b_when_the_download_fails(
    packets: Any, caplog: pytest.LogCaptureFixture
) -> None:
    handler, server, fetcher = packets
    handler.fail = lambda request: Reply(503) if request.path.startswith("/objects/") else None
    with caplog.at_level(logging.WARNING):
        a, b = await mapped("tag_snapshot", RunMapper(fetcher))
    v = b.values
    assert v["payload"] is None  # never the path as if it were the payload
    assert v["payload_ref"] == B_PATH and v["payload_type"] == "application/store"
    assert v["status"] == "EXECUTING" and decoded(v, "metadata")["progress"] == 0.42
    assert "run run_cmek7r9kd0009l50a7c3q1m2w" in caplog.text and "payload_ref" in caplog.text
    assert decoded(a.values, "payload")["reportId"] == "rep_8812"  # the rest of the batch is fine
    assert len(server.requests) == 1 + 5  # presign once, five download attempts
    # The failure is not cached: the next sight of the row tries again.
    handler.fail = None
    _, b = await mapped("tag_snapshot", RunMapper(fetcher))
    assert decoded(b.values, "payload") == B_PAYLOAD


async def test_offloaded_packets_of_a_batch_download_concurrently() -> None:
    seen: list[str] = []

    async def handler(request: Request) -> Reply:
        seen.append(request.path)
        if request.path.startswith("/api/"):
            return Reply(body={"presignedUrl": "/obj" + request.path})
        return Reply(body='{"n": 1}')

    async with ScriptedServer(handler) as server, httpx.AsyncClient() as client:
        mapper = RunMapper(PacketFetcher(client, server.url, {}))
        b = changes("tag_snapshot")[1]
        other = changes("tag_snapshot")[1]
        other.value["id"], other.value["friendlyId"] = "other", "run_other"
        other.value["payload"] = "run_other/payload.json"
        result = await mapper.map([b, other])
    assert [decoded(r.values, "payload") for r in result] == [{"n": 1}, {"n": 1}]
    # Both presigned URLs were asked for before either download: concurrent, not in turn.
    assert seen[:2] == [
        "/api/v1/runs/run_cmek7r9kd0009l50a7c3q1m2w/packets/payload",
        "/api/v1/runs/run_other/packets/payload",
    ]


async def test_a_plus_c_completes_run_a(typed: bool) -> None:
    mapper = RunMapper()
    a, _ = await mapped("tag_snapshot", mapper, typed=typed)
    [c] = await mapped("live_update_c", mapper, typed=typed)
    assert (c.op, c.key) == ("update", ROW_A)
    # Only what Electric sent (the key and the changed columns) becomes columns.
    assert c.values == {
        "updated_at": "2026-08-20T09:14:31.209Z",
        "started_at": "2026-08-20T09:14:04.880Z",
        "finished_at": "2026-08-20T09:14:31.200Z",
        "status": "COMPLETED",
        "db_status": "COMPLETED_SUCCESSFULLY",
        "duration_ms": 25904,
        "cost_in_cents": 0.20723,
        "base_cost_in_cents": 0.0025,
        "metadata": '{"progress":1,"stage":"done"}',
        "output": '{"url":"https://files.example.com/reports/rep_8812.pdf","pages":12}',
        "output_type": "application/super+json",
        "output_ref": None,
    }
    merged = {**a.values, **c.values}
    assert merged["id"] == "run_cmek7q1xv0003l50ahz2b9r4d"
    assert merged["status"] == "COMPLETED" and flags(merged["status"]) == {
        "isCompleted",
        "isSuccess",
    }
    assert merged["finished_at"] == "2026-08-20T09:14:31.200Z"
    assert decoded(merged, "output") == {
        "url": "https://files.example.com/reports/rep_8812.pdf",
        "pages": 12,
    }
    assert decoded(merged, "metadata") == {"progress": 1, "stage": "done"}
    assert merged["duration_ms"] == 25904
    assert merged["payload"] == a.values["payload"] and merged["tags"] == a.values["tags"]


async def test_c_alone_uses_the_stored_row_for_the_metadata_type() -> None:
    calls: list[str] = []

    def lookup(key: str) -> dict[str, Any]:
        calls.append(key)
        return {"id": "run_cmek7q1xv0003l50ahz2b9r4d", "metadata_type": "application/json"}

    [c] = await mapped("live_update_c", RunMapper(lookup=lookup))
    assert c.values["metadata"] == '{"progress":1,"stage":"done"}'
    assert calls == [ROW_A]


async def test_row_d_failed_with_a_built_in_error(typed: bool) -> None:
    [d] = await mapped("run_d", typed=typed)
    v = d.values
    assert (d.key, v["id"]) == (ROW_D, "run_cmek7tq5h000fl50a0y8d6k2s")
    assert v["status"] == "FAILED" and v["db_status"] == "COMPLETED_WITH_ERRORS"
    assert flags(v["status"]) == {"isCompleted", "isFailed"}
    assert v["finished_at"] == "2026-08-20T09:19:12.650Z"
    assert decoded(v, "error") == {
        "name": "Error",
        "message": "Upstream CRM returned 503 Service Unavailable",
        "stackTrace": "Error: Upstream CRM returned 503 Service Unavailable\n"
        "    at syncAccounts (file:///src/trigger/syncCrm.ts:58:13)",
    }
    assert decoded(v, "payload") == {"accountId": "acct_77"}
    assert decoded(v, "metadata") == {"attempt": 3, "lastError": "HTTP 503"}
    assert decoded(v, "tags") == ["org:acme", "sync"]
    assert (v["is_test"], v["number"], v["cost_in_cents"]) == (0, 1846, 0.49502)


async def test_row_e_crashed_test_run_with_an_internal_error(typed: bool) -> None:
    [e] = await mapped("run_e", typed=typed)
    v = e.values
    assert (e.key, v["id"]) == (ROW_E, "run_cmek7v2ta000kl50a5n9e3h8c")
    assert v["status"] == "CRASHED" and flags(v["status"]) == {"isCompleted", "isFailed"}
    assert v["finished_at"] == "2026-08-20T09:23:40.500Z"
    assert decoded(v, "error") == {
        "message": "trigger.dev internal error (TASK_PROCESS_OOM_KILLED)"
    }
    assert (
        decoded(v, "payload") == "Render intro.mp4 at 1080p" and v["payload_type"] == "text/plain"
    )
    assert v["tags"] == "[]"  # runTags null, not {}
    assert v["is_test"] == 1
    assert v["metadata"] is None and v["output"] is None


async def test_dequeued_is_kept_with_the_current_api_version() -> None:
    # With the current x-trigger-api-version the server sends DEQUEUED as it is.
    [d] = changes("run_d")
    d.value["status"] = "DEQUEUED"
    [change] = await RunMapper().map([d])
    assert change.values["status"] == "DEQUEUED" and flags("DEQUEUED") == {"isExecuting"}
