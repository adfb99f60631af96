"""Counting the shape requests the emulator answers, per route and kind (what a cache in front
of it lets through): `DevServer.request_counts()` and `/_replica/requests`."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx

from replica.devserver import DevServer
from replica.devserver.request_counts import request_kind, shape_route

from .helpers import headers, sync


def test_routes_and_kinds_are_read_from_the_request() -> None:
    assert shape_route("/v1/shape") == "/v1/shape"
    assert shape_route("/realtime/v1/runs") == "/realtime/v1/runs"
    assert shape_route("/realtime/v1/runs/run_1") == "/realtime/v1/runs/{run_id}"
    assert shape_route("/realtime/v1/batches/batch_1") == "/realtime/v1/batches/{batch_id}"
    assert shape_route("/realtime/v1/runs/run_1/extra") is None
    assert shape_route("/_replica/requests") is None
    assert shape_route("/api/v1/tasks/t/trigger") is None
    assert request_kind({"offset": ["-1"]}) == "initial"
    assert request_kind({"offset": ["now"]}) == "initial"
    assert request_kind({"offset": ["0_0"], "handle": ["h"]}) == "catch-up"
    assert request_kind({"offset": ["0_0"], "live": ["false"]}) == "catch-up"
    # Electric's reading: anything but the literal "false" is live.
    assert request_kind({"offset": ["0_inf"], "live": ["1"]}) == "live"


def test_requests_are_counted_per_route_kind_and_status(
    devserver_factory: Callable[..., DevServer],
) -> None:
    server = devserver_factory(live_concurrency_limit=1)
    run_id = server.trigger("t", {}, tags=["count:1"])
    h = headers(server.secret_key)
    with httpx.Client(base_url=server.url, timeout=15) as client:
        last, _ = sync(client, {"tags": "count:1"}, "/realtime/v1/runs", headers=h)
        live = {
            "tags": "count:1",
            "offset": last.headers["electric-offset"],
            "handle": last.headers["electric-handle"],
            "live": "true",
            "cursor": "",
        }
        client.get(f"/realtime/v1/runs/{run_id}", params={"offset": "-1"}, headers=h)
        client.get("/realtime/v1/runs", params={"offset": "-1", "tags": "x"})  # no token: 401
        client.get("/_replica/info", headers=h)  # not a shape route
        with httpx.Client(base_url=server.url, timeout=15) as other:
            held = threading.Thread(
                target=other.get,
                args=("/realtime/v1/runs",),
                kwargs={"params": live, "headers": h},
            )
            held.start()
            try:
                # The first live poll holds the one slot: the next is refused with a 429.
                while server.emulator.live_requests == 0:
                    threading.Event().wait(0.01)
                refused = client.get("/realtime/v1/runs", params=live, headers=h)
            finally:
                server.set_status(run_id, "EXECUTING")  # answers the held poll
                held.join(15)
        assert refused.status_code == 429
        tally = server.request_counts()
        server.rotate()
        conflict = client.get("/realtime/v1/runs", params={**live, "live": "false"}, headers=h)
        assert conflict.status_code == 409
        admin = client.get("/_replica/requests", headers=h).json()
        before = client.delete("/_replica/requests", headers=h).json()
        after = client.get("/_replica/requests", headers=h).json()

    runs = tally.counts["/realtime/v1/runs"]
    assert runs["initial"] == 2  # the sync's first request and the one without a token
    assert runs["catch-up"] >= 1
    assert runs["live"] == 2
    assert runs["401"] == 1
    assert runs["429"] == 1
    assert tally.counts["/realtime/v1/runs/{run_id}"] == {"initial": 1}
    assert tally.live_peak == {"/realtime/v1/runs": 2}  # the refused one was in flight too
    assert tally.total("initial") == 3
    assert set(tally.counts) == {"/realtime/v1/runs", "/realtime/v1/runs/{run_id}"}
    assert admin["counts"]["/realtime/v1/runs"]["409"] == 1
    assert admin["counts"]["/realtime/v1/runs"]["catch-up"] == runs["catch-up"] + 1
    assert before == admin
    assert after == {"counts": {}, "live_peak": {}}


def test_injected_faults_count_as_answers(items: DevServer, client: httpx.Client) -> None:
    with items.fault("error", status=503, times=1):
        assert client.get("/v1/shape", params={"table": "items", "offset": "-1"}).is_error
    sync(client, {"table": "items"})
    counts = items.reset_request_counts().counts["/v1/shape"]
    assert counts["503"] == 1
    assert counts["initial"] == 2
    assert items.request_counts().counts == {}
