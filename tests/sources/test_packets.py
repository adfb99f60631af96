"""Packets: decoding by type, storing as JSON text, and fetching offloaded ones over HTTP."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest

from replica.errors import ProtocolError, RetriesExhaustedError
from replica.sources import NO_PACKET, PacketFetcher, decode_packet, to_json_text
from replica.sources.packets import PacketCache, format_utc
from replica.sources.taskrun import RunMapper
from tests.sources.helpers import B_PATH, B_PAYLOAD, PacketsServer, b_objects, message
from tests.support.scripted_server import Reply, Request, ScriptedServer
from tests.support.waiting import PATIENCE

# -- decode_packet -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind", "expected"),
    [
        ('{"a": [1, 2.5, null]}', "application/json", {"a": [1, 2.5, None]}),
        ('"just a string"', "application/json", "just a string"),
        ("null", "application/json", None),
        # Types are matched exactly, as the SDK's parsePacket does: these are not JSON.
        ('{"a": 1}', "application/json; charset=utf-8", '{"a": 1}'),
        ('{"a": 1}', "Application/JSON", '{"a": 1}'),
        ('{"a": 1}', None, '{"a": 1}'),
        (
            '{"json":{"n":"12"},"meta":{"values":{"n":["bigint"]},"v":1}}',
            "application/super+json",
            {"n": 12},
        ),
        ('{"json":"x"}', "application/super+json", "x"),
        ("Render intro.mp4 at 1080p", "text/plain", "Render intro.mp4 at 1080p"),
        ("{not json", "text/plain", "{not json"),
        ("<xml/>", "application/xml", "<xml/>"),
        ("run_x/payload.json", "application/store", "run_x/payload.json"),
    ],
)
def test_decode_packet(data: str, kind: str | None, expected: Any) -> None:
    assert decode_packet(data, kind) == expected


@pytest.mark.parametrize("data", ["", None])
def test_empty_data_is_no_packet(data: str | None) -> None:
    assert decode_packet(data, "application/json") is NO_PACKET
    assert not NO_PACKET


def test_big_integers_stay_exact() -> None:
    assert decode_packet('{"n": 123456789012345678901234567890}', "application/json") == {
        "n": 123456789012345678901234567890
    }


@pytest.mark.parametrize("kind", ["application/json", "application/super+json"])
def test_malformed_json_keeps_the_raw_text(kind: str) -> None:
    problems: list[str] = []
    assert decode_packet("{oops", kind, on_problem=problems.append) == "{oops"
    assert len(problems) == 1 and "not valid JSON" in problems[0]


def test_malformed_json_is_logged_by_default(caplog: pytest.LogCaptureFixture) -> None:
    assert decode_packet("[1,", "application/json") == "[1,"
    assert "not valid JSON" in caplog.text


# -- to_json_text ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"a": [1, "x", None, True]}, '{"a":[1,"x",null,true]}'),
        (
            datetime(2026, 8, 20, 9, 14, 3, 401999, tzinfo=timezone.utc),
            '"2026-08-20T09:14:03.401Z"',
        ),
        (datetime(2026, 8, 20, 9, 14, 3), '"2026-08-20T09:14:03.000Z"'),  # naive = UTC
        (
            datetime(2026, 8, 20, 11, 14, 3, 5000, tzinfo=timezone(timedelta(hours=2))),
            '"2026-08-20T09:14:03.005Z"',
        ),
        (datetime(99, 1, 2, tzinfo=timezone.utc), '"0099-01-02T00:00:00.000Z"'),
        (date(2026, 8, 20), '"2026-08-20"'),
        (frozenset({3}), "[3]"),
        ({"s": {4}}, '{"s":[4]}'),
        ([{4}], "[[4]]"),
        ((1, 2), "[1,2]"),
        (2**70, "1180591620717411303424"),
        ({"n": -(2**64)}, '{"n":-18446744073709551616}'),
        (Decimal("1.10"), "1.10"),
        ({"d": Decimal("-0.000001")}, '{"d":-0.000001}'),
        (Decimal("NaN"), "null"),
        (math.nan, "null"),
        ([math.inf, -math.inf], "[null,null]"),
        ("é\u2028", '"é\u2028"'),
    ],
)
def test_to_json_text(value: Any, text: str) -> None:
    assert to_json_text(value) == text


def test_non_string_keys_and_big_ints_take_the_exact_path() -> None:
    when = datetime(1970, 1, 2, tzinfo=timezone.utc)
    value = {
        1: "a",
        2.0: "b",
        1.5: "c",
        None: "e",
        when: "f",
        "s": {2**65: [Decimal("2.50")]},
    }
    assert json.loads(to_json_text(value)) == {
        "1": "a",
        "2": "b",
        "1.5": "c",
        "null": "e",
        "1970-01-02T00:00:00.000Z": "f",
        "s": {"36893488147419103232": [2.5]},
    }
    assert '"s":{"36893488147419103232":[2.50]}' in to_json_text(value)
    assert to_json_text({True: 1, False: 2}) == '{"true":1,"false":2}'
    assert to_json_text({"x": [2**64, datetime(2026, 1, 1), {5}, (6,), "q\n"]}) == (
        '{"x":[18446744073709551616,"2026-01-01T00:00:00.000Z",[5],[6],"q\\n"]}'
    )


def test_unstorable_values_raise_value_error() -> None:
    with pytest.raises(ValueError, match="object"):
        to_json_text({"a": object()})
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="nested too deeply"):
        to_json_text(cycle)


def test_format_utc_truncates_to_milliseconds() -> None:
    assert format_utc(datetime(2026, 1, 1, 0, 0, 0, 999999)) == "2026-01-01T00:00:00.999Z"


def test_packet_cache_is_bounded() -> None:
    cache = PacketCache(max_entries=2, max_chars=10)
    cache.put("a", "12345", "application/json")
    cache.put("b", "123", "application/json")
    assert cache.get("a") == ("12345", "application/json")  # a is now the most recent
    cache.put("c", "1", "text/plain")
    assert cache.get("b") is None and len(cache) == 2
    cache.put("d", "123456", "application/json")  # over the character budget: evicts
    assert cache.get("a") is None
    cache.put("huge", "x" * 11, "application/json")  # larger than the budget: not kept
    assert cache.get("huge") is None


# -- PacketFetcher over real sockets ---------------------------------------------------------

HEADERS = {"Authorization": "Bearer tr_dev_x", "x-trigger-api-version": "2025-07-16"}


def fetcher(client: httpx.AsyncClient, server: ScriptedServer, **kw: Any) -> PacketFetcher:
    options = {"initial_delay": 0.001, "max_delay": 0.004, **kw}
    return PacketFetcher(client, server.url + "/", HEADERS, **options)


async def serve(handler: Any) -> ScriptedServer:
    server = ScriptedServer(handler)
    await server.__aenter__()
    if isinstance(handler, PacketsServer):
        handler.base = server.url
    return server


@pytest.mark.anyio
async def test_fetch_through_the_run_route() -> None:
    handler = PacketsServer(b_objects())
    server = await serve(handler)
    try:
        async with httpx.AsyncClient() as client:
            data, kind = await fetcher(client, server).fetch(
                B_PATH.split("/")[0], "payload", B_PATH
            )
    finally:
        await server.__aexit__()
    assert json.loads(data) == B_PAYLOAD and kind == "application/json"
    api, download = server.requests
    assert api.path == "/api/v1/runs/run_cmek7r9kd0009l50a7c3q1m2w/packets/payload"
    assert api.headers["authorization"] == "Bearer tr_dev_x"
    assert api.headers["x-trigger-api-version"] == "2025-07-16"
    assert download.path == "/objects/run_cmek7r9kd0009l50a7c3q1m2w/payload.json"
    assert "authorization" not in download.headers


@pytest.mark.anyio
async def test_404_falls_back_to_the_packets_route_and_remembers() -> None:
    handler = PacketsServer(
        b_objects() | {"batch_1/item_0/payload.json": ("x", "text/plain")}, run_route=False
    )
    server = await serve(handler)
    try:
        async with httpx.AsyncClient() as client:
            packets = fetcher(client, server)
            first = await packets.fetch("run_cmek7r9kd0009l50a7c3q1m2w", "payload", B_PATH)
            second = await packets.fetch("run_other", "output", "batch_1/item_0/payload.json")
    finally:
        await server.__aexit__()
    assert json.loads(first[0]) == B_PAYLOAD
    assert second == ("x", "text/plain")
    targets = [r.target.split("?")[0] for r in server.requests]
    assert targets == [
        "/api/v1/runs/run_cmek7r9kd0009l50a7c3q1m2w/packets/payload",
        "/api/v1/packets/run_cmek7r9kd0009l50a7c3q1m2w%2Fpayload.json",
        "/objects/run_cmek7r9kd0009l50a7c3q1m2w/payload.json",
        # the per-run route answered 404 once: not asked again
        "/api/v1/packets/batch_1%2Fitem_0%2Fpayload.json",
        "/objects/batch_1/item_0/payload.json",
    ]


@pytest.mark.anyio
async def test_without_a_run_id_the_packets_route_is_used() -> None:
    handler = PacketsServer(b_objects())
    server = await serve(handler)
    try:
        async with httpx.AsyncClient() as client:
            await fetcher(client, server).fetch(None, "payload", B_PATH)
    finally:
        await server.__aexit__()
    assert server.requests[0].path.startswith("/api/v1/packets/")


@pytest.mark.anyio
async def test_retries_5xx_429_and_network_errors() -> None:
    failures = [
        Reply(503),
        Reply(429, body={"error": "Too many concurrent requests"}),
        Reply(200, body="[1,2,3]", drop_after=1),
    ]

    def fail(request: Request) -> Reply | None:
        if request.path.startswith("/objects/") and failures:
            return failures.pop(0)
        return None

    handler = PacketsServer(b_objects(), fail=fail)
    server = await serve(handler)
    try:
        async with httpx.AsyncClient() as client:
            data, _ = await fetcher(client, server).fetch(
                "run_cmek7r9kd0009l50a7c3q1m2w", "payload", B_PATH
            )
    finally:
        await server.__aexit__()
    assert json.loads(data) == B_PAYLOAD
    assert [r.path.startswith("/objects/") for r in server.requests] == [
        False,
        True,
        True,
        True,
        True,
    ]


@pytest.mark.anyio
async def test_retries_run_out() -> None:
    server = await serve(lambda request: Reply(500, body="boom"))
    try:
        async with httpx.AsyncClient() as client:
            with pytest.raises(RetriesExhaustedError) as info:
                await fetcher(client, server, attempts=3).fetch(
                    "run_a", "output", "run_a-1/output.json"
                )
    finally:
        await server.__aexit__()
    assert len(server.requests) == 3
    assert "3 times" in str(info.value) and "HTTP 500" in str(info.value)


@pytest.mark.anyio
async def test_timeouts_are_retried() -> None:
    server = await serve(lambda request: Reply(hang=True))
    try:
        async with httpx.AsyncClient() as client:
            with pytest.raises(RetriesExhaustedError, match="Timeout"):
                await fetcher(client, server, attempts=2, timeout=0.1).fetch(None, "payload", "p")
    finally:
        await server.__aexit__()
    assert len(server.requests) == 2


async def refused(fail: Any) -> tuple[ScriptedServer, ProtocolError]:
    """Fetch a packet from a server whose answers `fail` overrides; the refusal raised."""
    server = await serve(PacketsServer(b_objects(), fail=fail))
    try:
        async with httpx.AsyncClient() as client:
            with pytest.raises(ProtocolError) as info:
                await fetcher(client, server).fetch(
                    "run_cmek7r9kd0009l50a7c3q1m2w", "payload", B_PATH
                )
    finally:
        await server.__aexit__()
    return server, info.value


@pytest.mark.anyio
async def test_refusals_are_not_retried_and_urls_are_redacted() -> None:
    def fail(request: Request) -> Reply | None:
        return (
            Reply(403, body={"error": "expired"}) if request.path.startswith("/objects/") else None
        )

    server, err = await refused(fail)
    assert len(server.requests) == 2
    assert "HTTP 403" in str(err) and "expired" in str(err)
    assert err.url is not None and "s3cr3t" not in err.url and "s3cr3t" not in str(err)


@pytest.mark.anyio
@pytest.mark.parametrize("answer", [{"nope": 1}, [1], "not json", {"presignedUrl": ""}])
async def test_an_answer_without_a_presigned_url(answer: Any) -> None:
    server = await serve(lambda request: Reply(body=answer))
    try:
        async with httpx.AsyncClient() as client:
            with pytest.raises(ProtocolError, match="no presignedUrl"):
                await fetcher(client, server).fetch(None, "payload", "p")
    finally:
        await server.__aexit__()


@pytest.mark.anyio
async def test_relative_presigned_urls_and_default_content_type() -> None:
    def handler(request: Request) -> Reply:
        if request.path.startswith("/api/"):
            return Reply(body={"presignedUrl": "/blob/p?sig=1"})
        return Reply(headers={"content-type": ""}, body='{"ok":true}')

    server = await serve(handler)
    try:
        async with httpx.AsyncClient(headers={"Authorization": "Bearer default"}) as client:
            result = await fetcher(client, server).fetch(None, "payload", "p")
    finally:
        await server.__aexit__()
    assert result == ('{"ok":true}', "application/json")
    assert server.requests[1].path == "/blob/p"
    # The client's own default Authorization header is not sent to the object store either.
    assert "authorization" not in server.requests[1].headers


@pytest.mark.anyio
async def test_concurrency_is_bounded() -> None:
    inflight = peak = 0
    full = asyncio.Event()  # the first downloads are held until three are in flight

    async def handler(request: Request) -> Reply:
        nonlocal inflight, peak
        if request.path.startswith("/api/"):
            return Reply(body={"presignedUrl": f"/obj{request.path}"})
        inflight += 1
        peak = max(peak, inflight)
        if inflight == 3:
            full.set()
        await asyncio.wait_for(full.wait(), PATIENCE)
        inflight -= 1
        return Reply(body="1")

    server = await serve(handler)
    try:
        async with httpx.AsyncClient() as client:
            packets = fetcher(client, server, concurrency=3)
            results = await asyncio.gather(
                *(packets.fetch(None, "payload", f"p{i}") for i in range(10))
            )
    finally:
        await server.__aexit__()
    assert len(results) == 10 and peak == 3


def test_fetcher_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PacketFetcher(httpx.AsyncClient(), "http://x", {}, attempts=0)


@pytest.mark.anyio
async def test_a_refusal_that_quotes_the_request_keeps_its_secrets() -> None:
    """An error page echoing the Authorization header must not carry the token into the
    error (shown, logged and stored in status)."""

    def echo(request: Request) -> Reply | None:
        quoted = f"denied: {request.headers.get('authorization')} {request.target}"
        if request.path.startswith("/api/"):
            return Reply(403, body=quoted)
        return None

    _, err = await refused(echo)
    text = str(err)
    assert "denied: Bearer ***" in text and "HTTP 403" in text
    assert "tr_dev_x" not in text


@pytest.mark.anyio
async def test_a_packet_downloading_is_not_asked_for_again() -> None:
    """Two batches mapped while the first's download is held: the second joins it, and
    both rows are complete once it is done."""
    held = asyncio.Event()
    downloads = 0
    packets_server = PacketsServer(b_objects())

    async def handler(request: Request) -> Reply:
        nonlocal downloads
        if request.path.startswith("/objects/"):
            downloads += 1
            await asyncio.wait_for(held.wait(), PATIENCE)
        return packets_server(request)

    server = await serve(handler)
    packets_server.base = server.url
    row = {"id": "c1", "friendlyId": B_PATH.split("/")[0], "payloadType": "application/store"}
    try:
        async with httpx.AsyncClient() as client:
            mapper = RunMapper(fetcher(client, server))
            first: list[asyncio.Task[None]] = []
            second: list[asyncio.Task[None]] = []
            [one] = mapper.map_started([message("update", **row, payload=B_PATH)], first)
            [two] = mapper.map_started([message("update", **row, payload=B_PATH)], second)
            assert one.values["payload_ref"] == two.values["payload_ref"] == B_PATH
            while not downloads:  # noqa: ASYNC110 - the download is asked for
                await asyncio.sleep(0.01)
            held.set()
            await asyncio.gather(*first, *second)
    finally:
        await server.__aexit__()
    assert downloads == 1
    for change in (one, two):
        assert json.loads(change.values["payload"]) == B_PAYLOAD
        assert change.values["payload_ref"] is None
