"""Fault injection and the admin API under /_replica/."""

from __future__ import annotations

import time

import httpx
import pytest

from replica.devserver import DevServer
from replica.devserver.faults import FaultSpecError, parse_fault_spec

from .helpers import sync

ITEMS = {"table": "items"}


def admin(server: DevServer) -> dict[str, str]:
    return {"authorization": f"Bearer {server.secret_key}"}


def test_fault_specs_parse() -> None:
    rule = parse_fault_spec("error:status=502,retry_after=3,every=2,path=/v1/shape,live=false")
    assert (rule.kind, rule.status, rule.retry_after, rule.every, rule.path, rule.live) == (
        "error",
        502,
        3,
        2,
        "/v1/shape",
        False,
    )
    assert parse_fault_spec("429").retry_after is None
    assert parse_fault_spec("rate-limit:times=1").kind == "429"
    for bad in ("explode", "delay:seconds", "error:every=0", "delay:colour=red"):
        with pytest.raises(FaultSpecError):
            parse_fault_spec(bad)


def test_error_fault_with_retry_after_then_recovery(items: DevServer, client: httpx.Client) -> None:
    items.add_fault("error", status=503, retry_after=2, times=1)
    r = client.get("/v1/shape", params={**ITEMS, "offset": "-1"})
    assert r.status_code == 503
    assert r.headers["retry-after"] == "2"
    assert client.get("/v1/shape", params={**ITEMS, "offset": "-1"}).status_code == 200


def test_every_nth_and_429(items: DevServer, client: httpx.Client) -> None:
    items.add_fault("429:every=2,path=/v1/shape")
    statuses = [
        client.get("/v1/shape", params={**ITEMS, "offset": "-1"}).status_code for _ in range(4)
    ]
    assert statuses == [200, 429, 200, 429]


def test_delay_fault_only_on_live_requests(items: DevServer, client: httpx.Client) -> None:
    last, _ = sync(client, ITEMS)
    rule = items.add_fault("delay", seconds=0.3, live=True)
    client.get("/v1/shape", params={**ITEMS, "offset": "-1"})
    assert rule.fired == 0  # not a live request: not delayed
    items.insert("items", {"id": 9, "title": "x", "done": False, "n": 1})
    started = time.monotonic()
    r = client.get(
        "/v1/shape",
        params={
            **ITEMS,
            "live": "true",
            "cursor": "",
            "offset": last.headers["electric-offset"],
            "handle": last.headers["electric-handle"],
        },
    )
    assert r.status_code == 200
    assert rule.fired == 1
    assert time.monotonic() - started >= 0.3


def test_drop_fault_cuts_the_body(items: DevServer, client: httpx.Client) -> None:
    with items.fault("drop", times=1), pytest.raises(httpx.TransportError):
        client.get("/v1/shape", params={**ITEMS, "offset": "-1"})
    assert client.get("/v1/shape", params={**ITEMS, "offset": "-1"}).status_code == 200


def test_stale_fault_replays_the_expired_handles_initial_response(
    items: DevServer, client: httpx.Client
) -> None:
    first = client.get("/v1/shape", params={**ITEMS, "offset": "-1"})
    old = first.headers["electric-handle"]
    items.rotate(handle=old)
    items.add_fault("stale", times=2)
    replays = [
        client.get("/v1/shape", params={**ITEMS, "offset": "-1", "cache-buster": str(i)})
        for i in range(3)
    ]
    assert [r.headers["electric-handle"] for r in replays[:2]] == [old, old]
    assert replays[0].content == first.content
    assert replays[2].headers["electric-handle"] != old


def test_admin_api_needs_the_secret_key(devserver: DevServer, client: httpx.Client) -> None:
    assert client.get("/_replica/health").json()["ok"] is True
    assert client.get("/_replica/info").status_code == 401
    token = devserver.public_token(["admin"])
    assert (
        client.get("/_replica/info", headers={"authorization": f"Bearer {token}"}).status_code
        == 401
    )
    info = client.get("/_replica/info", headers=admin(devserver)).json()
    assert info["environment_id"] == devserver.environment_id


def test_admin_tables_transactions_rows_shapes_rotate_faults(
    devserver: DevServer, client: httpx.Client
) -> None:
    h = admin(devserver)
    r = client.post(
        "/_replica/tables",
        headers=h,
        json={
            "name": "notes",
            "columns": {"id": "text", "body": "text", "tags": "text[]"},
            "primary_key": ["id"],
        },
    )
    assert r.status_code == 200
    assert r.json()["schema"]["tags"] == {"type": "text", "dims": 1}
    r = client.post(
        "/_replica/transactions",
        headers=h,
        json={
            "ops": [
                {
                    "op": "insert",
                    "table": "notes",
                    "values": {"id": "a", "body": "x", "tags": ["t 1"]},
                },
                {"op": "insert", "table": "notes", "values": {"id": "b", "body": "y"}},
                {"op": "update", "table": "notes", "key": {"id": "a"}, "values": {"body": "z"}},
                {"op": "delete", "table": "notes", "key": {"id": "b"}},
            ]
        },
    )
    assert r.json()["changes"] == 4
    rows = client.get("/_replica/tables/notes/rows", headers=h).json()["rows"]
    assert rows == [{"id": "a", "body": "z", "tags": '{"t 1"}'}]
    bad = client.post(
        "/_replica/transactions",
        headers=h,
        json={"ops": [{"op": "insert", "table": "notes", "values": {"id": "a"}}]},
    )
    assert bad.status_code == 400
    assert "duplicate key" in bad.json()["error"]
    last, _ = sync(client, {"table": "notes"})
    shapes = client.get("/_replica/shapes", headers=h).json()["shapes"]
    assert [s["handle"] for s in shapes] == [last.headers["electric-handle"]]
    rotated = client.post("/_replica/shapes/rotate", headers=h, json={"table": "notes"}).json()
    assert rotated == {"rotated": [last.headers["electric-handle"]]}
    fault = client.post("/_replica/faults", headers=h, json={"kind": "error", "status": 500})
    assert fault.json()["fault"]["status"] == 500
    assert client.get("/v1/shape", params={"table": "notes", "offset": "-1"}).status_code == 500
    assert client.delete("/_replica/faults", headers=h).json() == {"removed": True}
    assert client.get("/v1/shape", params={"table": "notes", "offset": "-1"}).status_code == 200


def test_admin_runs(devserver: DevServer, client: httpx.Client) -> None:
    h = admin(devserver)
    created = client.post(
        "/_replica/runs",
        headers=h,
        json={"task": "t", "payload": {"a": 1}, "options": {"tags": ["x"]}},
    ).json()
    run_id = created["id"]
    r = client.post(
        f"/_replica/runs/{run_id}/status",
        headers=h,
        json={"status": "COMPLETED_SUCCESSFULLY", "output": '{"ok":true}'},
    )
    assert r.json()["run"]["status"] == "COMPLETED_SUCCESSFULLY"
    r = client.patch(f"/_replica/runs/{run_id}", headers=h, json={"costInCents": 1.5})
    assert r.json()["run"]["costInCents"] == "1.5"
    runs = client.get("/_replica/runs", headers=h).json()["runs"]
    assert [x["friendlyId"] for x in runs] == [run_id]
    token = client.post("/_replica/tokens", headers=h, json={"scopes": ["read:runs"]}).json()
    r = client.get(
        f"/realtime/v1/runs/{run_id}",
        params={"offset": "-1"},
        headers={"authorization": f"Bearer {token['token']}"},
    )
    assert r.status_code == 200
    assert (
        client.post(
            "/_replica/runs/run_x/status", headers=h, json={"status": "EXECUTING"}
        ).status_code
        == 404
    )
