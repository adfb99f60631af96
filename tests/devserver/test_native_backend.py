"""The realtime routes served like Trigger.dev's native backend (trigger-realtime.md §1.8,
§1.11): handles, offsets, snapshots that end with up-to-date, full rows, empty polls, the
moving tag window, the run cap, forgotten working sets, the live-poll limit."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from replica.devserver import DevServer
from replica.devserver.pgtypes import parse_timestamp
from replica.devserver.taskrun import ELECTRIC_COLUMNS

from .helpers import MODERN, headers, resume, run_ids

NATIVE_SCHEMA = (
    '{"id":{"type":"text"},"taskIdentifier":{"type":"text"},"createdAt":{"type":"timestamp"},'
    '"updatedAt":{"type":"timestamp"},"startedAt":{"type":"timestamp"},'
    '"delayUntil":{"type":"timestamp"},"queuedAt":{"type":"timestamp"},'
    '"expiredAt":{"type":"timestamp"},"completedAt":{"type":"timestamp"},'
    '"friendlyId":{"type":"text"},"number":{"type":"int4"},"isTest":{"type":"bool"},'
    '"status":{"type":"text"},"usageDurationMs":{"type":"int4"},'
    '"costInCents":{"type":"float8"},"baseCostInCents":{"type":"float8"},'
    '"ttl":{"type":"text"},"payload":{"type":"text"},"payloadType":{"type":"text"},'
    '"metadata":{"type":"text"},"metadataType":{"type":"text"},"output":{"type":"text"},'
    '"outputType":{"type":"text"},"runTags":{"type":"text","dims":1},'
    '"error":{"type":"jsonb"},"realtimeStreams":{"type":"text","dims":1}}'
)
TAG_HANDLE = re.compile(r"^runs_(\d+)_(\d+)_([0-9a-f]{8})$")
OFFSET = re.compile(r"^(\d+)_(\d+)$")
MINUTE_MS = 60_000
DAY_MS = 24 * 3600 * 1000


@pytest.fixture
def native(devserver_factory: Callable[..., DevServer]) -> DevServer:
    return devserver_factory(realtime_backend="native")


@pytest.fixture
def client(native: DevServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=native.url, timeout=15, headers=headers(native.secret_key)) as c:
        yield c


def ms(stored: str) -> int:
    """A stored timestamp in epoch milliseconds."""
    return int((parse_timestamp(stored) - dt.datetime(1970, 1, 1)).total_seconds() * 1000)


def iso(stored: str) -> str:
    """A stored timestamp as the native backend sends it: ISO, milliseconds, no `Z`."""
    return parse_timestamp(stored).isoformat(timespec="milliseconds")


def ops(response: httpx.Response) -> list[tuple[str, str]]:
    """(operation or control, friendlyId) of each message of a response."""
    out = []
    for m in response.json():
        h = m["headers"]
        out.append((h.get("operation") or h["control"], m.get("value", {}).get("friendlyId", "")))
    return out


def follow(client: httpx.Client, path: str, last: httpx.Response, **params: str) -> httpx.Response:
    """The next live poll after `last`."""
    r = resume(client, path, last, live=True, **params)
    assert r.status_code == 200, r.text
    return r


def held_poll(
    server: DevServer, client: httpx.Client, last: httpx.Response
) -> tuple[threading.Thread, list[httpx.Response]]:
    """The tag feed's next live poll on a thread, returned once the server holds it; the
    list gets its response."""
    held: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: held.append(follow(client, "/realtime/v1/runs", last, tags="w"))
    )
    thread.start()
    while server.emulator.live_requests < 1:
        threading.Event().wait(0.01)
    return thread, held


# -- handles, offsets, snapshots ---------------------------------------------------------


def test_single_run_snapshot_handle_offset_and_headers(
    native: DevServer, client: httpx.Client
) -> None:
    run_id = native.trigger("t", {"n": 1}, tags=["user:1"])
    run = native.run(run_id)
    r = client.get(f"/realtime/v1/runs/{run_id}", params={"offset": "-1"})
    assert r.headers["electric-handle"] == f"run-{run['id']}"
    offset = OFFSET.match(r.headers["electric-offset"])
    assert offset is not None
    assert int(offset.group(1)) == ms(run["updatedAt"])
    assert ops(r) == [("insert", run_id), ("up-to-date", "")]
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["vary"] == "accept-encoding"
    assert r.headers["access-control-expose-headers"] == "*"
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["electric-schema"] == NATIVE_SCHEMA
    assert "electric-cursor" not in r.headers
    assert "etag" not in r.headers
    # A non-live request carrying the handle gets the snapshot again, under that handle.
    again = resume(client, f"/realtime/v1/runs/{run_id}", r)
    assert ops(again) == [("insert", run_id), ("up-to-date", "")]
    assert again.headers["electric-handle"] == f"run-{run['id']}"
    assert again.headers["electric-offset"] != r.headers["electric-offset"]  # a new seq


def test_values_are_encoded_like_the_native_serializer(
    native: DevServer, client: httpx.Client
) -> None:
    run_id = native.trigger("t", {"n": 1}, tags=["user:1", 'a "b" c'])
    native.start_run(run_id)
    native.fail_run(run_id, {"type": "BUILT_IN_ERROR", "name": "E", "message": "m", "n": 1.0})
    native.update_run(
        run_id, costInCents=0.00008, baseCostInCents=2.5, realtimeStreams=["default"], ttl="1h"
    )
    untagged = native.trigger("t", None)
    stored = native.run(run_id)
    assert stored["costInCents"] == "8e-05"  # Postgres' text form, as Electric sends it
    value = client.get(f"/realtime/v1/runs/{run_id}", params={"offset": "-1"}).json()[0]["value"]
    assert list(value) == list(ELECTRIC_COLUMNS)
    for name in ("createdAt", "updatedAt", "startedAt", "queuedAt", "completedAt"):
        assert value[name] == iso(stored[name])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}", value[name])
    assert value["delayUntil"] is None
    assert value["isTest"] == "f"
    assert value["number"] == "1"
    assert value["costInCents"] == "0.00008"
    assert value["baseCostInCents"] == "2.5"
    assert value["runTags"] == '{"user:1","a \\"b\\" c"}'
    assert value["realtimeStreams"] == '{"default"}'
    assert value["error"] == '{"n":1,"name":"E","type":"BUILT_IN_ERROR","message":"m"}'
    assert value["payload"] == '{"n":1}'
    assert value["ttl"] == "1h"
    plain = client.get(f"/realtime/v1/runs/{untagged}", params={"offset": "-1"}).json()[0]
    assert plain["value"]["runTags"] is None  # no SQL default: empty is NULL
    assert plain["value"]["realtimeStreams"] == "{}"
    assert plain["value"]["error"] is None


def test_a_missing_run_is_an_empty_snapshot_at_0_0(native: DevServer) -> None:
    # The route answers 404 first; the backend itself (reached on replica lag in the
    # webapp) answers an empty snapshot.
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/realtime/v1/runs/run_gone",
        "query_string": b"offset=-1",
        "headers": [(k.encode(), v.encode()) for k, v in MODERN.items()],
    }
    backend = native.emulator.native
    assert backend is not None
    response = asyncio.run(backend.stream_run(Request(scope), ELECTRIC_COLUMNS, "gone"))
    assert response.body == b'[{"headers":{"control":"up-to-date"}}]'
    assert response.headers["electric-offset"] == "0_0"
    assert response.headers["electric-handle"] == "run-gone"


def test_tag_feed_handle_pins_the_bucketed_window(native: DevServer, client: httpx.Client) -> None:
    run_id = native.trigger("t", {}, tags=["w"])
    before = native.emulator.clock.millis()
    r = client.get("/realtime/v1/runs", params={"tags": "w", "offset": "-1"})
    after = native.emulator.clock.millis()
    handle = TAG_HANDLE.match(r.headers["electric-handle"])
    assert handle is not None
    floor = int(handle.group(1))
    assert floor % MINUTE_MS == 0  # bucketed down to the minute
    assert (before - DAY_MS) // MINUTE_MS * MINUTE_MS <= floor <= after - DAY_MS
    assert ops(r) == [("insert", run_id), ("up-to-date", "")]
    assert int(OFFSET.match(r.headers["electric-offset"]).group(1)) == ms(
        native.run(run_id)["updatedAt"]
    )
    one_hour = client.get("/realtime/v1/runs", params={"tags": "w", "createdAt": "1h"})
    assert int(TAG_HANDLE.match(one_hour.headers["electric-handle"]).group(1)) > floor
    for capped in ("1w", "not a duration"):  # beyond the max age, or unparsable: max age
        r = client.get("/realtime/v1/runs", params={"tags": "w", "createdAt": capped})
        assert int(TAG_HANDLE.match(r.headers["electric-handle"]).group(1)) in (
            floor,
            floor + MINUTE_MS,
        )
    empty = client.get("/realtime/v1/runs", params={"tags": "nothing", "offset": "-1"})
    assert ops(empty) == [("up-to-date", "")]
    assert OFFSET.match(empty.headers["electric-offset"]).group(1) == "0"


def test_window_start_is_inclusive(native: DevServer, client: httpx.Client) -> None:
    r = client.get("/realtime/v1/runs", params={"tags": "w", "createdAt": "1h", "offset": "-1"})
    floor = int(TAG_HANDLE.match(r.headers["electric-handle"]).group(1))
    at_floor = native.trigger("t", {}, tags=["w"])
    just_before = native.trigger("t", {}, tags=["w"])
    epoch = dt.datetime(1970, 1, 1)
    native.update_run(at_floor, createdAt=epoch + dt.timedelta(milliseconds=floor))
    native.update_run(just_before, createdAt=epoch + dt.timedelta(milliseconds=floor - 1))
    again = resume(client, "/realtime/v1/runs", r, tags="w")
    assert run_ids(again.json()) == {at_floor}


def test_batch_feed_handles_are_per_connection(native: DevServer, client: httpx.Client) -> None:
    batch_id, ids = native.batch_trigger([{"task": "t", "payload": {"i": i}} for i in range(3)])
    internal = batch_id.removeprefix("batch_")
    first = client.get(f"/realtime/v1/batches/{batch_id}", params={"offset": "-1"})
    second = client.get(f"/realtime/v1/batches/{batch_id}", params={"offset": "-1"})
    for r in (first, second):
        assert re.fullmatch(rf"batch_{internal}_\d+_[0-9a-f]{{8}}", r.headers["electric-handle"])
        assert run_ids(r.json()) == set(ids)
        assert r.json()[-1] == {"headers": {"control": "up-to-date"}}
    assert first.headers["electric-handle"] != second.headers["electric-handle"]
    native.complete_run(ids[0], {"ok": True})
    live = follow(client, f"/realtime/v1/batches/{batch_id}", first)
    assert ops(live) == [("update", ids[0]), ("up-to-date", "")]
    assert live.json()[0]["value"]["status"] == "COMPLETED_SUCCESSFULLY"
    assert live.json()[0]["value"]["output"] == '{"ok":true}'


# -- live polls ----------------------------------------------------------------------------


def test_live_polls_send_full_rows_inserts_and_updates_never_deletes(
    native: DevServer, client: httpx.Client
) -> None:
    a = native.trigger("t", {"n": 1}, tags=["w"])
    b = native.trigger("t", {"n": 2}, tags=["w"])
    path, params = "/realtime/v1/runs", {"tags": "w"}
    last = client.get(path, params={**params, "offset": "-1"})
    native.set_metadata(a, {"progress": 1})
    last = follow(client, path, last, **params)
    assert ops(last) == [("update", a), ("up-to-date", "")]
    assert list(last.json()[0]["value"]) == list(ELECTRIC_COLUMNS)  # the full row
    assert last.headers["electric-cursor"] == OFFSET.match(last.headers["electric-offset"]).group(2)
    assert "electric-schema" not in last.headers
    c = native.trigger("t", {"n": 3}, tags=["w"])
    last = follow(client, path, last, **params)
    assert ops(last) == [("insert", c), ("up-to-date", "")]
    native.update_run(b, runTags=["other"])  # leaves the set: nothing is sent for it
    native.start_run(a)
    last = follow(client, path, last, **params)
    assert ops(last) == [("update", a), ("up-to-date", "")]
    native.start_run(b)
    last = follow(client, path, last, **params)  # held, then the backstop: nothing new
    assert ops(last) == [("up-to-date", "")]


def test_every_empty_poll_returns_a_new_offset(native: DevServer, client: httpx.Client) -> None:
    run_id = native.trigger("t", {}, tags=["w"])
    newest = ms(native.run(run_id)["updatedAt"])
    last = client.get("/realtime/v1/runs", params={"tags": "w", "offset": "-1"})
    offsets = [last.headers["electric-offset"]]
    for _ in range(2):
        last = follow(client, "/realtime/v1/runs", last, tags="w")
        assert ops(last) == [("up-to-date", "")]
        offsets.append(last.headers["electric-offset"])
    assert len(set(offsets)) == 3
    assert {OFFSET.match(o).group(1) for o in offsets} == {str(newest)}
    # A single-run feed's empty poll echoes the client's offset with a new cursor.
    single = client.get(f"/realtime/v1/runs/{run_id}", params={"offset": "-1"})
    empty = follow(client, f"/realtime/v1/runs/{run_id}", single)
    assert ops(empty) == [("up-to-date", "")]
    assert empty.headers["electric-offset"] == single.headers["electric-offset"]
    again = follow(client, f"/realtime/v1/runs/{run_id}", empty)
    assert again.headers["electric-cursor"] != empty.headers["electric-cursor"]


def test_the_tag_window_moves_and_runs_age_out_without_a_delete(
    devserver_factory: Callable[..., DevServer],
) -> None:
    # Working sets outlive the jump, as they would for a client that kept polling.
    server = devserver_factory(realtime_backend="native", native_working_set_ttl=10 * 86400)
    old = server.trigger("t", {"n": 1}, tags=["w"])
    with httpx.Client(base_url=server.url, headers=headers(server.secret_key)) as client:
        last = client.get("/realtime/v1/runs", params={"tags": "w", "offset": "-1"})
        pinned = int(TAG_HANDLE.match(last.headers["electric-handle"]).group(1))
        server.advance_clock(25 * 3600)
        server.start_run(old)  # created more than 24 h ago now: out of the window
        new = server.trigger("t", {"n": 2}, tags=["w"])
        last = follow(client, "/realtime/v1/runs", last, tags="w")
        assert ops(last) == [("insert", new), ("up-to-date", "")]
        server.complete_run(old)
        last = follow(client, "/realtime/v1/runs", last, tags="w")
        assert ops(last) == [("up-to-date", "")]
        # The handle is unchanged; a catch-up with it holds only what is left in the window.
        catch_up = resume(client, "/realtime/v1/runs", last, tags="w")
        assert catch_up.headers["electric-handle"].startswith(f"runs_{pinned}_")
        assert run_ids(catch_up.json()) == {new}


def test_a_poll_held_across_a_clock_jump_sees_the_moved_window(
    devserver_factory: Callable[..., DevServer],
) -> None:
    server = devserver_factory(
        realtime_backend="native", long_poll_timeout=30.0, native_working_set_ttl=10 * 86400
    )
    old = server.trigger("t", {"n": 1}, tags=["w"])
    with httpx.Client(base_url=server.url, headers=headers(server.secret_key)) as client:
        last = client.get("/realtime/v1/runs", params={"tags": "w", "offset": "-1"})
        poll, held = held_poll(server, client, last)
        server.advance_clock(25 * 3600)
        server.start_run(old)  # out of the window now: the held poll ignores it
        new = server.trigger("t", {"n": 2}, tags=["w"])
        poll.join()
        assert ops(held[0]) == [("insert", new), ("up-to-date", "")]


def test_a_forgotten_working_set_sends_updates_newer_than_the_offset(
    native: DevServer, client: httpx.Client
) -> None:
    a = native.trigger("t", {}, tags=["w"])
    b = native.trigger("t", {}, tags=["w"])
    last = client.get("/realtime/v1/runs", params={"tags": "w", "offset": "-1"})
    native.advance_clock(native.config.native_working_set_ttl)
    native.start_run(a)
    c = native.trigger("t", {}, tags=["w"])
    last = follow(client, "/realtime/v1/runs", last, tags="w")
    # No working set to diff against: every run newer than the offset is an "update",
    # even one the client has never seen.
    assert sorted(ops(last)[:-1]) == sorted([("update", a), ("update", c)])
    assert b not in run_ids(last.json())


def test_tag_and_batch_feeds_hold_at_most_the_newest_runs(
    devserver_factory: Callable[..., DevServer],
) -> None:
    server = devserver_factory(realtime_backend="native", native_max_list_results=3)
    ids = [server.trigger("t", {"i": i}, tags=["w"]) for i in range(5)]
    batch_id, batch_ids = server.batch_trigger([{"task": "t"} for _ in range(4)])
    with httpx.Client(base_url=server.url, headers=headers(server.secret_key)) as client:
        r = client.get("/realtime/v1/runs", params={"tags": "w", "offset": "-1"})
        assert [friendly for _, friendly in ops(r)[:-1]] == ids[:1:-1]
        batch = client.get(f"/realtime/v1/batches/{batch_id}", params={"offset": "-1"})
        assert run_ids(batch.json()) == set(batch_ids[1:])


def test_legacy_names_and_old_api_versions(native: DevServer) -> None:
    run_id = native.trigger("t", {})
    native.set_status(run_id, "DEQUEUED")
    auth = {"authorization": f"Bearer {native.secret_key}"}
    with httpx.Client(base_url=native.url, headers=auth) as client:
        r = client.get(f"/realtime/v1/runs/{run_id}", params={"offset": "-1"})
        assert "electric-handle" not in r.headers
        assert r.headers["electric-shape-id"].startswith("run-")
        assert OFFSET.match(r.headers["electric-chunk-last-offset"])
        assert r.json()[0]["value"]["status"] == "EXECUTING"
        r = client.get(f"/realtime/v1/runs/{run_id}", params={"offset": "-1"}, headers=MODERN)
        assert r.json()[0]["value"]["status"] == "DEQUEUED"


def test_live_polls_take_concurrency_slots(devserver_factory: Callable[..., DevServer]) -> None:
    server = devserver_factory(
        realtime_backend="native", live_concurrency_limit=1, long_poll_timeout=10.0
    )
    run_id = server.trigger("t", {}, tags=["w"])
    with httpx.Client(base_url=server.url, headers=headers(server.secret_key)) as client:
        last = client.get("/realtime/v1/runs", params={"tags": "w", "offset": "-1"})
        holder, held = held_poll(server, client, last)
        with httpx.Client(base_url=server.url, headers=headers(server.secret_key)) as other:
            refused = resume(other, f"/realtime/v1/runs/{run_id}", last, live=True)
            assert refused.status_code == 429
            assert refused.json() == {"error": "Too many concurrent requests"}
            snapshot = other.get(f"/realtime/v1/runs/{run_id}", params={"offset": "-1"})
            assert snapshot.status_code == 200  # not live: no slot needed
        server.start_run(run_id)
        holder.join()
        assert ops(held[0]) == [("update", run_id), ("up-to-date", "")]


def test_an_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown realtime backend 'shadow': use one of electric"):
        DevServer(realtime_backend="shadow")  # type: ignore[arg-type]
