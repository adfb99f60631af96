"""The Trigger.dev realtime routes: auth, scopes, filters, rewrites and the live-poll limit."""

from __future__ import annotations

import datetime as dt
import threading

import httpx
import pytest

from replica.devserver import DevServer
from replica.devserver.auth import sign_jwt
from replica.devserver.taskrun import ELECTRIC_COLUMNS
from tests.support.waiting import PATIENCE, wait_for

from .helpers import MODERN, headers, run_ids, sync


@pytest.fixture
def runs(devserver: DevServer) -> dict[str, str]:
    return {
        "a": devserver.trigger("send-email", {"n": 1}, tags=["user:1234", "org:acme"]),
        "b": devserver.trigger("send-email", {"n": 2}, tags=["user:1234"]),
        "c": devserver.trigger("render", {"n": 3}, tags=["org:acme"]),
        "d": devserver.trigger("render", {"n": 4}),
    }


def test_secret_key_reads_a_run(
    devserver: DevServer, client: httpx.Client, runs: dict[str, str]
) -> None:
    _, messages = sync(
        client, {}, f"/realtime/v1/runs/{runs['a']}", headers=headers(devserver.secret_key)
    )
    assert run_ids(messages) == {runs["a"]}
    value = messages[0]["value"]
    assert list(value) == list(ELECTRIC_COLUMNS)
    assert value["status"] == "PENDING"
    assert value["runTags"] == "{user:1234,org:acme}"
    assert messages[0]["key"] == f'"public"."TaskRun"/"{value["id"]}"'


@pytest.mark.parametrize(
    ("scope", "allowed"),
    [
        ("read:runs:{a}", True),
        ("read:runs", True),
        ("read:tasks:send-email", True),
        ("read:tags:user:1234", True),
        ("read:all", True),
        ("admin", True),
        ("*:runs:{a}", True),
        ("read:runs:{b}", False),
        ("read:tasks:render", False),
        ("read:tags:user:999", False),
        ("write:runs:{a}", False),
    ],
)
def test_public_token_scopes_on_the_run_route(
    devserver: DevServer, client: httpx.Client, runs: dict[str, str], scope: str, allowed: bool
) -> None:
    token = devserver.public_token([scope.format(**runs)])
    r = client.get(
        f"/realtime/v1/runs/{runs['a']}", params={"offset": "-1"}, headers=headers(token)
    )
    if allowed:
        assert r.status_code == 200
    else:
        assert r.status_code == 403
        assert r.json() == {
            "error": "Unauthorized",
            "code": "unauthorized",
            "param": "access_token",
            "type": "authorization",
        }


def test_bad_credentials_get_401(
    devserver: DevServer, client: httpx.Client, runs: dict[str, str]
) -> None:
    path = f"/realtime/v1/runs/{runs['a']}"
    expired = devserver.public_token(["read:runs"], expires_in=-10)
    forged = sign_jwt(
        "tr_dev_other", {"sub": devserver.environment_id, "pub": True, "scopes": ["admin"]}
    )
    cases = [
        ({}, "Invalid or Missing API key"),
        (headers("tr_dev_wrong"), "Invalid API Key"),
        (headers(expired), "Public Access Token has expired"),
        (headers(forged), "Public Access Token is invalid"),
        (headers("not.a.jwt"), "Public Access Token is invalid"),
    ]
    for h, message in cases:
        r = client.get(path, params={"offset": "-1"}, headers=h)
        assert r.status_code == 401
        assert r.json() == {"error": message}


def test_unknown_run_and_batch_are_404(devserver: DevServer, client: httpx.Client) -> None:
    h = headers(devserver.secret_key)
    r = client.get("/realtime/v1/runs/run_nope", params={"offset": "-1"}, headers=h)
    assert r.status_code == 404
    assert r.json() == {"error": "Not found"}
    assert r.headers["x-should-retry"] == "false"
    r = client.get("/realtime/v1/batches/batch_nope", params={"offset": "-1"}, headers=h)
    assert r.status_code == 404
    assert r.headers["x-should-retry"] == "true"


def test_tags_have_all_of_semantics_and_scope_on_any_tag(
    devserver: DevServer, client: httpx.Client, runs: dict[str, str]
) -> None:
    h = headers(devserver.secret_key)
    _, one = sync(client, {"tags": "user:1234"}, "/realtime/v1/runs", headers=h)
    assert run_ids(one) == {runs["a"], runs["b"]}
    _, both = sync(client, {"tags": "user:1234,org:acme"}, "/realtime/v1/runs", headers=h)
    assert run_ids(both) == {runs["a"]}
    _, every = sync(client, {}, "/realtime/v1/runs", headers=h)
    assert run_ids(every) == set(runs.values())
    token = devserver.public_token(["read:tags:org:acme"])
    ok = client.get(
        "/realtime/v1/runs",
        params={"tags": "user:1234,org:acme", "offset": "-1"},
        headers=headers(token),
    )
    assert ok.status_code == 200
    denied = client.get(
        "/realtime/v1/runs", params={"tags": "user:1234", "offset": "-1"}, headers=headers(token)
    )
    assert denied.status_code == 403
    bad = client.get("/realtime/v1/runs", params={"tags": 'a"b', "offset": "-1"}, headers=h)
    assert bad.status_code == 400
    assert bad.json()["error"] == "Query Error"


def test_created_at_window(devserver: DevServer, client: httpx.Client) -> None:
    old = devserver.trigger("t", {}, tags=["w"])
    recent = devserver.trigger("t", {}, tags=["w"])
    two_hours_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)
    devserver.update_run(old, createdAt=two_hours_ago)
    h = headers(devserver.secret_key)
    _, last_hour = sync(client, {"tags": "w", "createdAt": "1h"}, "/realtime/v1/runs", headers=h)
    assert run_ids(last_hour) == {recent}
    _, default = sync(client, {"tags": "w"}, "/realtime/v1/runs", headers=h)
    assert run_ids(default) == {old, recent}
    devserver.update_run(old, createdAt=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3))
    _, capped = sync(client, {"tags": "w", "createdAt": "1w"}, "/realtime/v1/runs", headers=h)
    assert run_ids(capped) == {recent}  # the server caps the window at 24 h


def test_skip_columns_from_the_url_and_from_the_token(
    devserver: DevServer, client: httpx.Client, runs: dict[str, str]
) -> None:
    path = f"/realtime/v1/runs/{runs['a']}"
    r = client.get(
        path,
        params={"offset": "-1", "skipColumns": "payload,output,id,status"},
        headers=headers(devserver.secret_key),
    )
    value = r.json()[0]["value"]
    assert "payload" not in value
    assert "output" not in value
    assert "id" in value  # never skipped
    assert "status" in value
    assert '"payload"' not in r.headers["electric-schema"]
    token = devserver.public_token(["read:runs"], skip_columns=["metadata"])
    r = client.get(path, params={"offset": "-1", "skipColumns": "payload"}, headers=headers(token))
    value = r.json()[0]["value"]
    assert "metadata" not in value
    assert "payload" in value  # the token's claim wins over the URL


def test_dequeued_is_rewritten_without_the_api_version_header(
    devserver: DevServer, client: httpx.Client, runs: dict[str, str]
) -> None:
    devserver.set_status(runs["a"], "DEQUEUED")
    path = f"/realtime/v1/runs/{runs['a']}"
    auth = {"authorization": f"Bearer {devserver.secret_key}"}
    current = client.get(path, params={"offset": "-1"}, headers={**auth, **MODERN})
    assert current.json()[0]["value"]["status"] == "DEQUEUED"
    old = client.get(
        path,
        params={"offset": "-1"},
        headers={**auth, "x-trigger-electric-version": "1.0.0-beta.1"},
    )
    assert old.json()[0]["value"]["status"] == "EXECUTING"


def test_legacy_header_names_without_the_electric_version_header(
    devserver: DevServer, client: httpx.Client, runs: dict[str, str]
) -> None:
    path = f"/realtime/v1/runs/{runs['a']}"
    auth = {"authorization": f"Bearer {devserver.secret_key}"}
    first = client.get(path, params={"offset": "-1"}, headers=auth)
    assert "electric-handle" not in first.headers
    handle = first.headers["electric-shape-id"]
    offset = first.headers["electric-chunk-last-offset"]
    assert offset == "0_0"
    # Legacy clients send shape_id instead of handle.
    second = client.get(path, params={"offset": offset, "shape_id": handle}, headers=auth)
    assert second.status_code == 200
    assert second.json()[-1]["headers"]["control"] == "up-to-date"


def test_live_polls_over_the_concurrency_limit_get_429(
    devserver_factory, runs: dict[str, str]
) -> None:
    # The first live poll is held until the run changes (the long-poll timeout is only a
    # safety net), so the second one always finds the limit reached.
    server = devserver_factory(live_concurrency_limit=1, long_poll_timeout=PATIENCE)
    run_id = server.trigger("t", {})
    h = headers(server.secret_key)
    with httpx.Client(base_url=server.url, timeout=PATIENCE + 30) as c:
        last, _ = sync(c, {}, f"/realtime/v1/runs/{run_id}", headers=h)
        live = {
            "offset": last.headers["electric-offset"],
            "handle": last.headers["electric-handle"],
            "live": "true",
            "cursor": "",
        }
        first: list[httpx.Response] = []
        holder = threading.Thread(
            target=lambda: first.append(
                c.get(f"/realtime/v1/runs/{run_id}", params=live, headers=h)
            )
        )
        holder.start()
        wait_for(lambda: server.emulator.live_requests >= 1, what="the first live poll")
        with httpx.Client(base_url=server.url, timeout=PATIENCE) as other:
            second = other.get(f"/realtime/v1/runs/{run_id}", params=live, headers=h)
            assert second.status_code == 429
            assert second.json() == {"error": "Too many concurrent requests"}
            assert "retry-after" not in second.headers
            # Non-live requests do not count.
            assert (
                other.get(
                    f"/realtime/v1/runs/{run_id}", params={"offset": "-1"}, headers=h
                ).status_code
                == 200
            )
        server.start_run(run_id)  # answers the held poll
        holder.join()
        assert first[0].status_code == 200


def test_batch_route(devserver: DevServer, client: httpx.Client) -> None:
    batch_id, ids = devserver.batch_trigger([{"task": "t", "payload": {"i": i}} for i in range(3)])
    devserver.trigger("t", {})
    _, messages = sync(
        client, {}, f"/realtime/v1/batches/{batch_id}", headers=headers(devserver.secret_key)
    )
    assert run_ids(messages) == set(ids)
    token = devserver.public_token([f"read:batch:{batch_id}"])
    assert (
        client.get(
            f"/realtime/v1/batches/{batch_id}", params={"offset": "-1"}, headers=headers(token)
        ).status_code
        == 200
    )
    other = devserver.public_token(["read:batch:batch_other"])
    assert (
        client.get(
            f"/realtime/v1/batches/{batch_id}", params={"offset": "-1"}, headers=headers(other)
        ).status_code
        == 403
    )
    # A run of a batch is readable with the batch's scope.
    assert (
        client.get(
            f"/realtime/v1/runs/{ids[0]}", params={"offset": "-1"}, headers=headers(token)
        ).status_code
        == 200
    )


def test_cors_preflight_allows_the_sdk_headers(devserver: DevServer, client: httpx.Client) -> None:
    r = client.options(
        "/realtime/v1/runs",
        headers={
            "origin": "http://localhost:5173",
            "access-control-request-method": "GET",
            "access-control-request-headers": "authorization,x-trigger-api-version",
        },
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "x-trigger-api-version" in r.headers["access-control-allow-headers"]
