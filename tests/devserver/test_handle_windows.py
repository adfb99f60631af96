"""Electric backend: the `createdAt` window remembered per tag-feed handle, refreshed by use
and forgotten after `handle_window_ttl` (trigger-realtime.md §1.11); the emulator clock and
the admin routes that control both."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import httpx
import pytest

from replica.devserver import DevServer

from .helpers import headers, resume, run_ids, sync

DAY = 24 * 3600.0
PATH = "/realtime/v1/runs"


@pytest.fixture
def tagged(devserver: DevServer) -> dict[str, str]:
    """A recent run and one created three days ago (outside any window), both tagged `w`."""
    recent = devserver.trigger("t", {}, tags=["w"])
    old = devserver.trigger("t", {}, tags=["w"])
    devserver.update_run(old, createdAt=devserver.emulator.clock.now() - dt.timedelta(days=3))
    return {"recent": recent, "old": old}


@pytest.fixture
def client(devserver: DevServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=devserver.url, timeout=15, headers=headers(devserver.secret_key)
    ) as c:
        yield c


def again(client: httpx.Client, last: httpx.Response) -> httpx.Response:
    """The catch-up request a client resuming from `last` sends."""
    return resume(client, PATH, last, tags="w")


def test_a_remembered_window_keeps_the_feed_on_its_shape(
    devserver: DevServer, client: httpx.Client, tagged: dict[str, str]
) -> None:
    last, messages = sync(client, {"tags": "w"}, PATH)
    assert run_ids(messages) == {tagged["recent"]}
    (window,) = devserver.handle_windows()
    assert window["handle"] == last.headers["electric-handle"]
    assert again(client, last).status_code == 200


def test_a_forgotten_window_gives_a_shape_of_every_run_with_the_tags(
    devserver: DevServer, client: httpx.Client, tagged: dict[str, str]
) -> None:
    last, _ = sync(client, {"tags": "w"}, PATH)
    assert devserver.forget_handle_windows() == 1
    conflict = again(client, last)
    assert conflict.status_code == 409  # no createdAt bound: another shape
    new_handle = conflict.headers["electric-handle"]
    assert new_handle != last.headers["electric-handle"]
    _, messages = sync(client, {"tags": "w", "handle": new_handle}, PATH)
    assert run_ids(messages) == {tagged["recent"], tagged["old"]}
    assert devserver.handle_windows() == []  # a window-less feed is never remembered
    (shape,) = [s for s in devserver.shapes() if s["handle"] == new_handle]
    assert "createdAt" not in shape["where"]


def test_windows_expire_after_the_ttl_unless_used(
    devserver: DevServer, client: httpx.Client, tagged: dict[str, str]
) -> None:
    assert devserver.config.handle_window_ttl == 14 * DAY  # the webapp's stale limit
    last, _ = sync(client, {"tags": "w"}, PATH)
    devserver.advance_clock(13 * DAY)
    last = again(client, last)  # using the window writes it again: its age restarts
    assert last.status_code == 200
    assert devserver.handle_windows()[0]["age"] < DAY
    devserver.advance_clock(13 * DAY)
    assert again(client, last).status_code == 200
    devserver.advance_clock(14 * DAY)
    assert devserver.handle_windows() == []
    assert again(client, last).status_code == 409


def test_a_409_passes_the_window_to_the_new_handle(
    devserver: DevServer, client: httpx.Client, tagged: dict[str, str]
) -> None:
    last, _ = sync(client, {"tags": "w"}, PATH)
    (before,) = devserver.handle_windows()
    devserver.rotate()
    conflict = again(client, last)
    assert conflict.status_code == 409
    windows = {w["handle"]: w["created_at_floor"] for w in devserver.handle_windows()}
    assert windows[conflict.headers["electric-handle"]] == before["created_at_floor"]
    _, messages = sync(client, {"tags": "w", "handle": conflict.headers["electric-handle"]}, PATH)
    assert run_ids(messages) == {tagged["recent"]}


def test_legacy_clients_never_have_a_window_remembered(
    devserver: DevServer, tagged: dict[str, str]
) -> None:
    # The webapp reads the response's `electric-handle` after renaming it for clients
    # without `x-trigger-electric-version`, so it finds none to remember.
    auth = {"authorization": f"Bearer {devserver.secret_key}"}
    with httpx.Client(base_url=devserver.url, headers=auth) as legacy:
        first = legacy.get(PATH, params={"tags": "w", "offset": "-1"})
        assert devserver.handle_windows() == []
        second = legacy.get(
            PATH,
            params={
                "tags": "w",
                "offset": first.headers["electric-chunk-last-offset"],
                "shape_id": first.headers["electric-shape-id"],
            },
        )
        assert second.status_code == 409


def test_a_short_ttl_from_the_config(devserver_factory: Callable[..., DevServer]) -> None:
    server = devserver_factory(handle_window_ttl=60)
    server.trigger("t", {}, tags=["w"])
    with httpx.Client(base_url=server.url, headers=headers(server.secret_key)) as client:
        last, _ = sync(client, {"tags": "w"}, PATH)
        server.advance_clock(59)
        assert len(server.handle_windows()) == 1
        server.advance_clock(1)
        assert again(client, last).status_code == 409


def test_clock_and_handle_windows_over_the_admin_api(
    devserver: DevServer, client: httpx.Client, tagged: dict[str, str]
) -> None:
    sync(client, {"tags": "w"}, PATH)
    clock = client.get("/_replica/clock").json()
    assert clock["offset"] == 0
    moved = client.post("/_replica/clock", json={"advance": 3600}).json()
    assert moved["offset"] == 3600
    assert dt.datetime.fromisoformat(moved["now"].rstrip("Z")) >= dt.datetime.fromisoformat(
        clock["now"].rstrip("Z")
    ) + dt.timedelta(hours=1)
    back = client.post("/_replica/clock", json={"advance": -1})
    assert back.status_code == 400
    assert "only moves forward" in back.json()["error"]
    # Runs written afterwards carry the emulator's time.
    run = devserver.run(devserver.trigger("t", {}))
    created = dt.datetime.fromisoformat(run["createdAt"])
    assert created >= dt.datetime.fromisoformat(moved["now"].rstrip("Z"))
    windows = client.get("/_replica/handle-windows").json()["handle_windows"]
    assert len(windows) == 1
    assert windows[0]["age"] >= 3600
    handle = windows[0]["handle"]
    assert client.request("DELETE", "/_replica/handle-windows", json={"handle": "nope"}).json() == {
        "forgotten": 0
    }
    assert client.request("DELETE", "/_replica/handle-windows", json={"handle": handle}).json() == {
        "forgotten": 1
    }
    info = client.get("/_replica/info").json()
    assert info["clock_offset"] == 3600
    assert info["config"]["realtime_backend"] == "electric"
    assert info["config"]["handle_window_ttl"] == 14 * DAY
