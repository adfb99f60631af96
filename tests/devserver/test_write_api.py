"""The write side over HTTP: trigger, batches, metadata, cancel, packets and presigned URLs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx

from replica.devserver import DevServer
from replica.devserver.auth import verify_jwt

from .helpers import sync


def auth(server: DevServer) -> dict[str, str]:
    return {"authorization": f"Bearer {server.secret_key}"}


def test_trigger_returns_the_id_and_a_public_token(
    devserver: DevServer, client: httpx.Client
) -> None:
    r = client.post(
        "/api/v1/tasks/send-email/trigger",
        json={
            "payload": {"to": "a@example.com"},
            "options": {"tags": ["user:1234"], "metadata": {"step": 1}, "ttl": "10m"},
        },
        headers=auth(devserver),
    )
    assert r.status_code == 200
    run_id = r.json()["id"]
    assert r.json() == {"id": run_id, "isCached": False}
    claims = verify_jwt(r.headers["x-trigger-jwt"], [devserver.secret_key])
    assert f"read:runs:{run_id}" in claims["scopes"]
    assert json.loads(r.headers["x-trigger-jwt-claims"]) == {
        "sub": devserver.environment_id,
        "pub": True,
    }
    run = devserver.run(run_id)
    assert run["status"] == "PENDING"
    assert run["payload"] == '{"to":"a@example.com"}'
    assert run["payloadType"] == "application/json"
    assert run["metadata"] == '{"step":1}'
    assert run["ttl"] == "10m"
    assert run["runTags"] == "{user:1234}"
    assert run["number"] == "1"


def test_trigger_with_an_idempotency_key_returns_the_same_run(
    devserver: DevServer, client: httpx.Client
) -> None:
    body = {"payload": {}, "options": {"idempotencyKey": "k1"}}
    first = client.post("/api/v1/tasks/t/trigger", json=body, headers=auth(devserver)).json()
    again = client.post("/api/v1/tasks/t/trigger", json=body, headers=auth(devserver)).json()
    assert again == {"id": first["id"], "isCached": True}


def test_trigger_needs_a_write_scope(devserver: DevServer, client: httpx.Client) -> None:
    reader = devserver.public_token(["read:runs"])
    writer = devserver.public_token(["write:tasks:t"])
    h = {"authorization": f"Bearer {reader}"}
    assert client.post("/api/v1/tasks/t/trigger", json={}, headers=h).status_code == 403
    h = {"authorization": f"Bearer {writer}"}
    assert client.post("/api/v1/tasks/t/trigger", json={}, headers=h).status_code == 200
    assert client.post("/api/v1/tasks/other/trigger", json={}, headers=h).status_code == 403


def test_delayed_trigger(devserver: DevServer, client: httpx.Client) -> None:
    r = client.post(
        "/api/v1/tasks/t/trigger", json={"options": {"delay": "1h"}}, headers=auth(devserver)
    )
    run = devserver.run(r.json()["id"])
    assert run["status"] == "DELAYED"
    assert run["delayUntil"] is not None
    assert run["queuedAt"] is None


def test_large_payloads_are_offloaded_and_downloadable(
    devserver: DevServer, client: httpx.Client
) -> None:
    big = {"rows": "x" * (600 * 1024)}
    r = client.post("/api/v1/tasks/import/trigger", json={"payload": big}, headers=auth(devserver))
    run_id = r.json()["id"]
    run = devserver.run(run_id)
    assert run["payloadType"] == "application/store"
    assert run["payload"] == f"{run_id}/payload.json"
    # Newer SDKs ask the run route first; older ones the packets route.
    for path in (
        f"/api/v1/runs/{run_id}/packets/payload",
        f"/api/v1/packets/{run_id}%2Fpayload.json",
    ):
        presigned = client.get(path, headers=auth(devserver))
        assert presigned.status_code == 200
        download = httpx.get(presigned.json()["presignedUrl"])
        assert download.status_code == 200
        assert download.headers["content-type"] == "application/json"
        assert download.json() == big
    assert (
        client.get(f"/api/v1/runs/{run_id}/packets/output", headers=auth(devserver)).status_code
        == 404
    )
    tampered = presigned.json()["presignedUrl"].replace("signature=", "signature=0")
    assert httpx.get(tampered).status_code == 403


def test_packet_download_routes_answer_after_the_configured_latency(
    devserver_factory: Callable[..., DevServer],
) -> None:
    latency = 0.25  # a lower bound only: a slow machine answers later, never earlier
    server = devserver_factory(packet_latency=latency, payload_offload_threshold=16)
    run_id = server.trigger("import", {"rows": "x" * 64})
    assert server.run(run_id)["payloadType"] == "application/store"  # type: ignore[index]
    with httpx.Client(base_url=server.url, headers=auth(server), timeout=15) as client:
        for path in (
            f"/api/v1/runs/{run_id}/packets/payload",
            f"/api/v1/packets/{run_id}%2Fpayload.json",
        ):
            started = time.monotonic()
            presigned = client.get(path)
            assert presigned.status_code == 200
            assert time.monotonic() - started >= latency
            started = time.monotonic()
            download = httpx.get(presigned.json()["presignedUrl"])
            assert download.json() == {"rows": "x" * 64}
            assert time.monotonic() - started >= latency


def test_sdk_style_upload_then_trigger_with_the_store_path(
    devserver: DevServer, client: httpx.Client
) -> None:
    r = client.put("/api/v2/packets/trigger%2Ft%2F1-abc%2Fpayload.json", headers=auth(devserver))
    body = r.json()
    assert body["storagePath"] == "trigger/t/1-abc/payload.json"
    put = httpx.put(body["presignedUrl"], content=b"hello", headers={"content-type": "text/plain"})
    assert put.status_code == 200
    r = client.post(
        "/api/v1/tasks/t/trigger",
        json={"payload": body["storagePath"], "options": {"payloadType": "application/store"}},
        headers=auth(devserver),
    )
    run = devserver.run(r.json()["id"])
    assert run["payloadType"] == "application/store"
    presigned = client.get(f"/api/v1/packets/{run['payload']}", headers=auth(devserver))
    download = httpx.get(presigned.json()["presignedUrl"])
    assert download.text == "hello"
    assert download.headers["content-type"] == "text/plain"


def test_batch_trigger_v2_and_two_phase_v3(devserver: DevServer, client: httpx.Client) -> None:
    items = [{"task": "t", "payload": {"i": i}, "options": {"tags": ["b"]}} for i in range(3)]
    r = client.post("/api/v2/tasks/batch", json={"items": items}, headers=auth(devserver))
    assert r.status_code == 200
    body = r.json()
    assert body["runCount"] == 3
    assert len(body["runs"]) == 3
    assert all(devserver.run(run["id"])["batchId"] for run in body["runs"])
    assert verify_jwt(r.headers["x-trigger-jwt"], [devserver.secret_key])["scopes"] == [
        f"read:batch:{body['id']}"
    ]
    created = client.post(
        "/api/v3/batches", json={"runCount": 2, "taskIdentifiers": ["t"]}, headers=auth(devserver)
    ).json()
    ndjson = "\n".join(json.dumps({"index": i, "task": "t", "payload": {"i": i}}) for i in range(2))
    streamed = client.post(
        f"/api/v3/batches/{created['id']}/items",
        content=ndjson,
        headers={**auth(devserver), "content-type": "application/x-ndjson"},
    )
    assert streamed.json() == {
        "id": created["id"],
        "itemsAccepted": 2,
        "itemsDeduplicated": 0,
        "sealed": True,
    }
    again = client.post(
        f"/api/v3/batches/{created['id']}/items", content=ndjson, headers=auth(devserver)
    )
    assert again.json()["itemsDeduplicated"] == 2


def test_metadata_updates_and_operations(devserver: DevServer, client: httpx.Client) -> None:
    run_id = devserver.trigger("t", {})
    url = f"/api/v1/runs/{run_id}/metadata"
    r = client.put(url, json={"metadata": {"progress": 0.1, "logs": []}}, headers=auth(devserver))
    assert r.json() == {"metadata": {"progress": 0.1, "logs": []}}
    r = client.put(
        url,
        json={
            "operations": [
                {"type": "set", "key": "progress", "value": 0.5},
                {"type": "append", "key": "logs", "value": "started"},
                {"type": "increment", "key": "count", "value": 2},
                {"type": "set", "key": "$.nested.stage", "value": "b"},
                {"type": "delete", "key": "missing"},
            ]
        },
        headers=auth(devserver),
    )
    expected = {"progress": 0.5, "logs": ["started"], "count": 2, "nested": {"stage": "b"}}
    assert r.json() == {"metadata": expected}
    assert json.loads(devserver.run(run_id)["metadata"]) == expected
    bad = client.put(
        url,
        json={"operations": [{"type": "set", "key": "__proto__", "value": 1}]},
        headers=auth(devserver),
    )
    assert bad.status_code == 400
    devserver.complete_run(run_id, {"ok": True})
    done = client.put(url, json={"metadata": {}}, headers=auth(devserver))
    assert done.status_code == 400
    assert done.json() == {"error": "Cannot update metadata for a completed run"}


def test_cancel(devserver: DevServer, client: httpx.Client) -> None:
    run_id = devserver.trigger("t", {})
    r = client.post(f"/api/v2/runs/{run_id}/cancel", headers=auth(devserver))
    assert r.json() == {"id": run_id}
    run = devserver.run(run_id)
    assert run["status"] == "CANCELED"
    assert run["completedAt"] is not None


def test_jwt_claims_need_the_secret_key(devserver: DevServer, client: httpx.Client) -> None:
    r = client.post("/api/v1/auth/jwt/claims", headers=auth(devserver))
    assert r.json() == {"sub": devserver.environment_id, "pub": True}
    token = devserver.public_token(["admin"])
    r = client.post("/api/v1/auth/jwt/claims", headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 401


def test_refusals_raised_in_helpers_are_answered_with_json_and_cors(
    devserver: DevServer, client: httpx.Client
) -> None:
    # Authentication and body parsing refuse from inside helpers; the app's one exception
    # handler must still answer like Trigger.dev: the JSON error, CORS for the caller's origin.
    origin = {"origin": "http://localhost:5173"}
    cases = [
        ({}, b"{}", 401, {"error": "Invalid or Missing API key"}),
        (auth(devserver), b"{not json", 400, {"error": "Invalid JSON body"}),
        (auth(devserver), b"[1]", 400, {"error": "Request body must be a JSON object"}),
    ]
    for h, body, status, error in cases:
        r = client.post("/api/v1/tasks/t/trigger", content=body, headers={**h, **origin})
        assert (r.status_code, r.json()) == (status, error)
        assert r.headers["content-type"] == "application/json"
        assert r.headers["access-control-allow-origin"] == "http://localhost:5173"
        assert "x-trigger-jwt" in r.headers["access-control-expose-headers"].split(",")
    assert devserver.runs() == []


def test_run_lives_fill_timestamps_and_durations(devserver: DevServer) -> None:
    run_id = devserver.trigger("t", {})
    started = devserver.start_run(run_id)
    assert started["status"] == "EXECUTING"
    assert started["startedAt"] is not None
    assert started["attemptNumber"] == "1"
    failed = devserver.fail_run(run_id)
    assert failed["status"] == "COMPLETED_WITH_ERRORS"
    assert json.loads(failed["error"])["type"] == "BUILT_IN_ERROR"
    assert failed["completedAt"] is not None
    assert int(failed["usageDurationMs"]) >= 0
    expired = devserver.set_status(devserver.trigger("t", {}), "EXPIRED")
    assert expired["expiredAt"] is not None


def test_trigger_many_bulk_loads_runs_that_feeds_serve(
    devserver: DevServer, client: httpx.Client
) -> None:
    ids = devserver.trigger_many(
        (
            {"task": "bulk", "payload": {"i": i}, "options": {"tags": ["user:1234"]}}
            for i in range(250)
        ),
        per_transaction=100,
    )
    assert len(ids) == len(set(ids)) == 250
    assert devserver.run(ids[-1])["number"] == "250"
    _, messages = sync(
        client,
        {"tags": "user:1234"},
        "/realtime/v1/runs",
        headers={
            "authorization": f"Bearer {devserver.secret_key}",
            "x-trigger-electric-version": "1.0.0-beta.1",
        },
    )
    assert {m["value"]["friendlyId"] for m in messages if "key" in m} == set(ids)
