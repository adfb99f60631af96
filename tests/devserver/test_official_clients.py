"""The official clients, unchanged, against the emulator: `@electric-sql/client` ShapeStream
and `@trigger.dev/sdk` (subscribeToRun, subscribeToRunsWithTag, subscribeToBatch, trigger,
batch trigger, public tokens). Each test ends when the client holds exactly the emulator's
own rows/runs, and each crosses a forced handle rotation."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from replica.devserver import DevServer
from replica.devserver.pgtypes import decode_value
from replica.devserver.taskrun import PUBLIC_STATUS
from tests.support.waiting import wait_for

from .node_clients import NodeScript, ensure_node_modules

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _node_modules() -> None:
    ensure_node_modules()


@pytest.fixture
def scripts() -> Iterator[list[NodeScript]]:
    started: list[NodeScript] = []
    yield started
    for script in started:
        script.stop()


def start(scripts: list[NodeScript], name: str, *args: str) -> NodeScript:
    script = NodeScript(name, *args)
    scripts.append(script)
    return script


# -- Electric ---------------------------------------------------------------------------


def typed_rows(server: DevServer, table: str, columns: list[str] | None = None) -> list[Any]:
    """The emulator's rows as the TS client parses them (ints, bools, ...), sorted by id."""
    t = server.emulator.db.table(table)
    names = columns or list(t.columns)
    rows = [
        {c: decode_value(row[c], t.columns[c].type) for c in names} for row in server.rows(table)
    ]
    return sorted(rows, key=lambda r: r["id"])


def last_rows(events: list[dict[str, Any]]) -> list[Any] | None:
    for event in reversed(events):
        if event["event"] == "rows":
            return sorted(event["rows"], key=lambda r: r["id"])
    return None


def test_shape_stream_ends_with_the_emulator_rows_across_a_rotation(
    devserver: DevServer, scripts: list[NodeScript]
) -> None:
    devserver.define_table(
        "todos",
        {"id": "int4", "title": "text", "done": "bool", "tags": "text[]", "score": "float8"},
        primary_key="id",
    )
    devserver.insert(
        "todos",
        *(
            {
                "id": i,
                "title": f"todo {i}",
                "done": i % 2 == 0,
                "tags": ["a", f"b {i}"],
                "score": i / 3,
            }
            for i in range(1, 21)
        ),
    )
    stream = start(scripts, "electric-shape.mjs", devserver.url, "todos")
    stream.wait_for(lambda ev: last_rows(ev) == typed_rows(devserver, "todos"))

    with devserver.transaction() as tx:
        tx.update("todos", {"id": 1}, {"done": True, "title": "changed"})
        tx.delete("todos", {"id": 2})
        tx.insert("todos", {"id": 100, "title": "new", "done": False, "tags": []})
    devserver.update("todos", {"id": 3}, {"id": 300})  # a primary-key change
    stream.wait_for(lambda ev: last_rows(ev) == typed_rows(devserver, "todos"))

    (handle,) = devserver.rotate(table="todos")
    devserver.update("todos", {"id": 4}, {"title": "after rotation"})
    devserver.insert("todos", {"id": 101, "title": "x", "done": True})
    stream.wait_for(
        lambda ev: (
            any(e["event"] == "must-refetch" for e in ev)
            and last_rows(ev) == typed_rows(devserver, "todos")
        )
    )
    final = [e for e in stream.events if e["event"] == "rows"][-1]
    assert final["handle"] != handle


def test_shape_stream_with_where_and_columns(
    devserver: DevServer, scripts: list[NodeScript]
) -> None:
    devserver.define_table("items", {"id": "int4", "n": "int4", "note": "text"}, "id")
    devserver.insert("items", *({"id": i, "n": i * 10, "note": "x"} for i in range(10)))
    stream = start(scripts, "electric-shape.mjs", devserver.url, "items", "n >= 50", "id,n")

    def expected() -> list[Any]:
        return [r for r in typed_rows(devserver, "items", ["id", "n"]) if r["n"] >= 50]

    stream.wait_for(lambda ev: last_rows(ev) == expected())
    devserver.update("items", {"id": 1}, {"n": 70})  # moves into the shape
    devserver.update("items", {"id": 9}, {"n": 0})  # moves out
    devserver.update("items", {"id": 8}, {"note": "not selected"})  # dropped
    stream.wait_for(lambda ev: last_rows(ev) == expected())


def test_shape_stream_recovers_from_injected_faults(
    devserver: DevServer, scripts: list[NodeScript]
) -> None:
    devserver.define_table("items", {"id": "int4", "v": "text"}, "id")
    devserver.insert("items", *({"id": i, "v": "a"} for i in range(5)))
    stream = start(scripts, "electric-shape.mjs", devserver.url, "items")
    stream.wait_for(lambda ev: last_rows(ev) == typed_rows(devserver, "items"))
    devserver.add_fault("error", status=503, retry_after=0, times=1)
    devserver.add_fault("drop", times=1, live=True)
    devserver.update("items", {"id": 1}, {"v": "b"})
    stream.wait_for(lambda ev: last_rows(ev) == typed_rows(devserver, "items"))
    # After a rotation a misbehaving cache replays the dead handle's offset=-1 response
    # once: the client must notice the expired handle and fetch again.
    devserver.add_fault("stale", times=1)
    devserver.rotate()
    devserver.insert("items", {"id": 9, "v": "c"})
    stream.wait_for(
        lambda ev: (
            any(e["event"] == "must-refetch" for e in ev)
            and last_rows(ev) == typed_rows(devserver, "items")
        )
    )
    # The client keeps long-polling, so every armed fault fires (once) in the end.
    rules = devserver.emulator.faults.rules()
    wait_for(lambda: all(r.fired >= (r.times or 1) for r in rules), what="every fault to fire")
    assert [(r.kind, r.fired) for r in rules] == [("error", 1), ("drop", 1), ("stale", 1)]


# -- Trigger.dev --------------------------------------------------------------------------


@pytest.fixture(params=["electric", "native"])
def server(
    request: pytest.FixtureRequest, devserver_factory: Callable[..., DevServer]
) -> DevServer:
    """A server whose realtime routes behave like each of Trigger.dev's two backends (a
    rotation then only concerns the Electric one)."""
    return devserver_factory(realtime_backend=request.param)


def decode_packet(server: DevServer, data: str | None, data_type: str | None) -> Any:
    if data is None or data == "":
        return None
    if data_type == "application/store":
        found = server.emulator.objects.get(data)
        assert found is not None
        body, data_type = found[0].decode(), found[1]
        return decode_packet(server, body, data_type)
    if data_type == "application/json":
        return json.loads(data)
    if data_type == "application/super+json":
        return json.loads(data)["json"]
    return data


def public_runs(server: DevServer, *, tag: str | None = None, batch: str | None = None) -> Any:
    """The emulator's runs as the SDK presents them, by id (fields the scripts print)."""
    out = {}
    for raw in server.runs():
        tags = server.emulator.runs.tags_of(raw)
        if tag is not None and tag not in tags:
            continue
        if batch is not None and raw["batchId"] != batch.removeprefix("batch_"):
            continue
        out[raw["friendlyId"]] = public_view(server, raw)
    return out


def public_view(server: DevServer, raw: dict[str, Any]) -> dict[str, Any]:
    metadata = decode_packet(server, raw["metadata"], raw["metadataType"])
    return {
        "status": PUBLIC_STATUS[raw["status"]],
        "tags": server.emulator.runs.tags_of(raw),
        "payload": decode_packet(server, raw["payload"], raw["payloadType"]),
        "output": decode_packet(server, raw["output"], raw["outputType"]),
        "metadata": metadata,
        "finished": raw["completedAt"] is not None,
    }


def seen_runs(events: list[dict[str, Any]]) -> dict[str, Any]:
    latest: dict[str, Any] = {}
    for event in events:
        if event["event"] == "run":
            run = event["run"]
            latest[run["id"]] = {
                "status": run["status"],
                "tags": run["tags"],
                "payload": run.get("payload"),
                "output": run["output"],
                "metadata": run["metadata"],
                "finished": run["finishedAt"] is not None,
            }
    return latest


def test_sdk_subscribe_to_runs_with_tag_across_a_rotation(
    server: DevServer, scripts: list[NodeScript]
) -> None:
    queued = server.trigger("send-email", {"to": "a@example.com"}, tags=["user:1234"])
    big = server.trigger(
        "import-csv", {"rows": "r" * 600_000}, tags=["user:1234", "org:acme"]
    )  # offloaded to the object store: the SDK fetches it through a presigned URL
    server.trigger("other", {"x": 1}, tags=["user:999"])
    sub = start(scripts, "trigger-runs.mjs", server.url, server.secret_key, "tag", "user:1234")
    sub.wait_for(lambda ev: seen_runs(ev) == public_runs(server, tag="user:1234"))
    assert server.run(big)["payloadType"] == "application/store"

    server.start_run(queued)
    server.set_metadata(queued, {"progress": 0.5, "stage": "sending"})
    server.set_status(big, "DEQUEUED")
    sub.wait_for(lambda ev: seen_runs(ev) == public_runs(server, tag="user:1234"))

    server.rotate()
    server.complete_run(queued, {"messageId": "m_1"})
    server.fail_run(big, {"type": "STRING_ERROR", "raw": "boom"})
    late = server.trigger("send-email", "plain text", tags=["user:1234"], payloadType="text/plain")
    sub.wait_for(lambda ev: seen_runs(ev) == public_runs(server, tag="user:1234"))
    assert seen_runs(sub.events)[late]["payload"] == "plain text"


def test_sdk_subscribe_to_run_with_a_public_token(
    server: DevServer, scripts: list[NodeScript]
) -> None:
    run_id = server.trigger("render", {"id": 7}, tags=["user:1234"])
    token = server.public_token([f"read:runs:{run_id}"])
    sub = start(scripts, "trigger-runs.mjs", server.url, token, "run", run_id)
    sub.wait_for(lambda ev: run_id in seen_runs(ev))
    server.start_run(run_id)
    server.rotate()
    server.set_metadata(run_id, operations=[{"type": "set", "key": "progress", "value": 1}])
    server.complete_run(run_id, {"frames": 120})
    sub.wait_for(lambda ev: seen_runs(ev).get(run_id) == public_view(server, server.run(run_id)))
    assert seen_runs(sub.events)[run_id]["status"] == "COMPLETED"


def test_sdk_subscribe_to_batch(server: DevServer, scripts: list[NodeScript]) -> None:
    batch_id, run_ids = server.batch_trigger(
        [{"task": "resize", "payload": {"n": i}} for i in range(3)]
    )
    sub = start(scripts, "trigger-runs.mjs", server.url, server.secret_key, "batch", batch_id)
    sub.wait_for(lambda ev: seen_runs(ev) == public_runs(server, batch=batch_id))
    server.complete_run(run_ids[0], {"ok": True})
    server.rotate()
    server.set_status(
        run_ids[1], "CRASHED", error={"type": "INTERNAL_ERROR", "code": "TASK_PROCESS_OOM_KILLED"}
    )
    server.cancel_run(run_ids[2])
    sub.wait_for(lambda ev: seen_runs(ev) == public_runs(server, batch=batch_id))


def test_sdk_write_api_triggers_batches_and_tokens(
    server: DevServer, scripts: list[NodeScript]
) -> None:
    result = start(scripts, "trigger-write.mjs", server.url, server.secret_key).run()
    small = server.run(result["small"]["id"])
    assert small is not None
    assert server.emulator.runs.tags_of(small) == ["user:1234", "sdk"]
    big = server.run(result["big"]["id"])
    assert big["payloadType"] == "application/store"  # the SDK uploaded it itself
    assert decode_packet(server, big["payload"], big["payloadType"]) == {"rows": "x" * 204800}
    batch = server.emulator.runs.get_batch(result["batch"]["batchId"])
    assert batch is not None
    assert result["batch"]["runCount"] == 2
    sub = start(scripts, "trigger-runs.mjs", server.url, result["token"], "tag", "sdk")
    sub.wait_for(lambda ev: seen_runs(ev) == public_runs(server, tag="sdk"))
