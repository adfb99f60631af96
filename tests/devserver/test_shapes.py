"""Shape semantics beyond the conformance cases: chunks, where moves, replica modes, PK
changes, columns, params, log modes, `offset=now`, SSE, CORS."""

from __future__ import annotations

import json

import httpx

from replica.devserver import DevServer

from .helpers import sync

ITEMS = {"table": "items"}


def follow(client: httpx.Client, params: dict[str, str], last: httpx.Response) -> list:
    r = client.get(
        "/v1/shape",
        params={
            **params,
            "offset": last.headers["electric-offset"],
            "handle": last.headers["electric-handle"],
        },
    )
    assert r.status_code == 200, r.text
    return [m for m in r.json() if "key" in m]


def test_snapshot_is_chunked_and_ends_at_0_inf(devserver_factory) -> None:
    server = devserver_factory(chunk_rows=2)
    server.define_table("t", {"id": "int4"}, "id")
    server.insert("t", *({"id": i} for i in range(5)))
    offsets = []
    with httpx.Client(base_url=server.url) as c:
        query = {"table": "t", "offset": "-1"}
        rows = 0
        for _ in range(10):
            r = c.get("/v1/shape", params=query)
            body = r.json()
            rows += sum(1 for m in body if "key" in m)
            offsets.append(r.headers["electric-offset"])
            if "electric-up-to-date" in r.headers:
                break
            query = {"table": "t", "offset": offsets[-1], "handle": r.headers["electric-handle"]}
    assert offsets == ["0_0", "0_1", "0_2", "0_inf"]
    assert rows == 5


def test_where_moves_and_params(items: DevServer, client: httpx.Client) -> None:
    params = {**ITEMS, "where": "n >= $1 AND done = $2", "params[1]": "15", "params[2]": "false"}
    last, messages = sync(client, params)
    assert {m["value"]["id"] for m in messages if "key" in m} == {"3"}
    items.update("items", {"id": 1}, {"n": 50})  # moves in: insert with the full row
    items.update("items", {"id": 3}, {"done": True})  # moves out: delete
    changes = follow(client, params, last)
    assert [(c["headers"]["operation"], c["value"]) for c in changes] == [
        ("insert", {"id": "1", "title": "one", "done": "f", "n": "50"}),
        ("delete", {"id": "3"}),
    ]


def test_replica_full_and_default_payloads(items: DevServer, client: httpx.Client) -> None:
    default, _ = sync(client, ITEMS)
    full_params = {**ITEMS, "replica": "full"}
    full, _ = sync(client, full_params)
    assert full.headers["electric-handle"] != default.headers["electric-handle"]
    items.update("items", {"id": 2}, {"title": "deux"})
    items.delete("items", {"id": 3})
    d = follow(client, ITEMS, default)
    assert d[0]["value"] == {"id": "2", "title": "deux"}
    assert "old_value" not in d[0]
    assert d[1]["value"] == {"id": "3"}
    f = follow(client, full_params, full)
    assert f[0]["value"] == {"id": "2", "title": "deux", "done": "t", "n": "20"}
    assert f[0]["old_value"] == {"title": "two"}
    assert f[1]["value"] == {"id": "3", "title": "three", "done": "f", "n": "30"}


def test_primary_key_change_is_delete_plus_insert(items: DevServer, client: httpx.Client) -> None:
    last, _ = sync(client, ITEMS)
    items.update("items", {"id": 1}, {"id": 10})
    changes = follow(client, ITEMS, last)
    old_key, new_key = '"public"."items"/"1"', '"public"."items"/"10"'
    assert [c["headers"]["operation"] for c in changes] == ["delete", "insert"]
    assert changes[0]["key"] == old_key
    assert changes[0]["headers"]["key_change_to"] == new_key
    assert changes[1]["headers"]["key_change_from"] == old_key
    assert [c["headers"]["op_position"] for c in changes] == [0, 1]
    assert "last" not in changes[0]["headers"]
    assert changes[1]["headers"]["last"] is True


def test_columns_projection_drops_unselected_updates(
    items: DevServer, client: httpx.Client
) -> None:
    params = {**ITEMS, "columns": 'id,"title"'}
    last, messages = sync(client, params)
    assert messages[0]["value"] == {"id": "1", "title": "one"}
    assert set(json.loads(last.headers["electric-schema"])) == {"id", "title"}
    items.update("items", {"id": 1}, {"n": 99})
    items.update("items", {"id": 2}, {"title": "zwei"})
    changes = follow(client, params, last)
    assert [c["value"] for c in changes] == [{"id": "2", "title": "zwei"}]
    r = client.get("/v1/shape", params={**ITEMS, "offset": "-1", "columns": "id,nope"})
    assert r.json()["errors"]["columns"] == [
        "The following columns are not found on the table: nope"
    ]


def test_where_clauses_that_cannot_be_evaluated_get_400(
    items: DevServer, client: httpx.Client
) -> None:
    for where, fragment in [
        ("n = (select 1)", "unsupported"),
        ("now() > n", "unsupported"),
        ("n", "must return a boolean"),
        ("title = 1", "operator does not exist"),
        ("n = $1", "parameter $1 was not provided"),
        ("n >", "Invalid syntax"),
    ]:
        r = client.get("/v1/shape", params={**ITEMS, "offset": "-1", "where": where})
        assert r.status_code == 400, where
        assert fragment in r.json()["errors"]["where"][0], (where, r.json())


def test_changes_only_and_offset_now(items: DevServer, client: httpx.Client) -> None:
    r = client.get("/v1/shape", params={**ITEMS, "offset": "-1", "log": "changes_only"})
    assert [m["headers"].get("control") for m in r.json()] == ["snapshot-end"]
    now = client.get("/v1/shape", params={**ITEMS, "offset": "now"})
    assert now.status_code == 200
    assert now.headers["electric-has-data"] == "false"
    assert now.json()[0]["headers"]["control"] == "up-to-date"
    items.insert("items", {"id": 7, "title": "seven", "done": False, "n": 7})
    changes = follow(client, ITEMS, now)
    assert [c["value"]["id"] for c in changes] == ["7"]


def test_live_request_returns_as_soon_as_data_arrives(
    items: DevServer, client: httpx.Client
) -> None:
    import threading

    last, _ = sync(client, ITEMS)
    timer = threading.Timer(
        0.1, lambda: items.insert("items", {"id": 8, "title": "eight", "done": True, "n": 8})
    )
    timer.start()
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
    timer.join()
    assert r.headers["electric-has-data"] == "true"
    assert r.json()[0]["value"]["id"] == "8"
    assert r.headers["cache-control"] == "public, max-age=5, stale-while-revalidate=5"
    assert "electric-cursor" in r.headers


def test_sse_live_mode(items: DevServer, client: httpx.Client) -> None:
    last, _ = sync(client, ITEMS)
    items.insert("items", {"id": 9, "title": "nine", "done": False, "n": 9})
    with client.stream(
        "GET",
        "/v1/shape",
        params={
            **ITEMS,
            "live": "true",
            "live_sse": "true",
            "cursor": "",
            "offset": last.headers["electric-offset"],
            "handle": last.headers["electric-handle"],
        },
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = []
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if events[-1].get("headers", {}).get("control") == "up-to-date":
                    break
    assert events[0]["value"]["id"] == "9"


def test_cors_and_options(items: DevServer, client: httpx.Client) -> None:
    r = client.options("/v1/shape", headers={"origin": "http://localhost:3000"})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert r.headers["access-control-max-age"] == "86400"
    r = client.get(
        "/v1/shape", params={**ITEMS, "offset": "-1"}, headers={"origin": "http://localhost:3000"}
    )
    exposed = r.headers["access-control-expose-headers"].split(",")
    for name in (
        "electric-handle",
        "electric-offset",
        "electric-schema",
        "electric-cursor",
        "electric-up-to-date",
        "electric-has-data",
    ):
        assert name in exposed


def test_quoted_table_names_and_schemas(devserver: DevServer, client: httpx.Client) -> None:
    devserver.define_table("Mixed Case", {"Id": "text"}, "Id", schema="app")
    devserver.insert('"app"."Mixed Case"', {"Id": "a/b"})
    _, messages = sync(client, {"table": '"app"."Mixed Case"'})
    assert messages[0]["key"] == '"app"."Mixed Case"/"a//b"'
    assert messages[0]["headers"]["relation"] == ["app", "Mixed Case"]
    r = client.get("/v1/shape", params={"table": "app.Mixed Case", "offset": "-1"})
    assert r.status_code == 400  # unquoted names fold to lower case, as in Postgres


def test_db_file_persists_tables_and_lsn_but_not_handles(tmp_path, devserver_factory) -> None:
    path = str(tmp_path / "dev.db")
    first = devserver_factory(db_path=path)
    first.define_table("t", {"id": "int4"}, "id")
    first.insert("t", {"id": 1})
    with httpx.Client(base_url=first.url) as c:
        last, _ = sync(c, {"table": "t"})
    lsn = first.lsn
    first.stop()
    second = devserver_factory(db_path=path)
    assert second.lsn == lsn
    assert second.rows("t") == [{"id": "1"}]
    second.insert("t", {"id": 2})
    assert second.lsn > lsn
    with httpx.Client(base_url=second.url) as c:
        r = c.get(
            "/v1/shape",
            params={
                "table": "t",
                "offset": last.headers["electric-offset"],
                "handle": last.headers["electric-handle"],
            },
        )
        assert r.status_code == 409
