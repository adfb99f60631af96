"""Client conformance cases 1-34 of electric-protocol.md §10, one test each (at least).

Every test runs the real ShapeStream over real sockets against a scripted server on
127.0.0.1.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from email.utils import format_datetime

import httpx
import pytest

from replica.errors import (
    FastLoopError,
    MalformedResponseError,
    MissingHeadersError,
    RetriesExhaustedError,
    ShapeDefinitionError,
    StaleResponseError,
    UpstreamError,
    ValueParseError,
)
from replica.protocol import (
    Backoff,
    ErrorRecovery,
    Position,
    ShapeDefinition,
    ShapeRows,
    ShapeStream,
    StreamOptions,
)
from tests.protocol.helpers import FAST, Recorder, items_shape, take
from tests.support.scripted_server import (
    Reply,
    Request,
    Script,
    ScriptedServer,
    change,
    shape_reply,
)

pytestmark = pytest.mark.anyio


def live_reply(*messages, offset: str = "1_0", cursor: str = "1") -> Reply:
    """A live reply with the given changes, ending up to date."""
    return shape_reply(messages, offset=offset, cursor=cursor, done=True)


def snapshot(*messages, **kw):
    """The offset=-1 reply: first snapshot chunk at 0_0, never up-to-date."""
    return shape_reply(messages, offset=kw.pop("offset", "0_0"), **kw)


# -- requests ---------------------------------------------------------------------------


async def test_case_01_first_request_is_offset_minus_one_with_shape_params() -> None:
    async with ScriptedServer(Script(snapshot(change(1, id="1")))) as server:
        shape = items_shape(
            server.url,
            where="id > $1 AND title = $2",
            where_params=["0", "x"],
            columns=["id", "title"],
            replica="full",
            log="full",
        )
        await take(server.url, 1, shape=shape, pages=True)
    first = server.requests[0].params
    assert first["offset"] == "-1"
    assert "live" not in first
    assert "handle" not in first
    assert first["table"] == "items"
    assert first["where"] == "id > $1 AND title = $2"
    assert first["params[1]"] == "0"
    assert first["params[2]"] == "x"
    assert first["columns"] == '"id","title"'
    assert first["replica"] == "full"
    assert first["log"] == "full"


async def test_case_02_next_request_uses_handle_and_offset_verbatim() -> None:
    script = Script(
        snapshot(handle="4306-1757029388081097", offset="0_0"),
        shape_reply(handle="4306-1757029388081097", offset="0_inf", done=True),
        shape_reply(handle="4306-1757029388081097", offset="26800584_4", cursor="7", done=True),
        shape_reply(handle="4306-1757029388081097", offset="26800590_0", cursor="8", done=True),
    )
    async with ScriptedServer(script) as server:
        await take(server.url, 4, pages=True)
    second, third, fourth = (r.params for r in server.requests[1:4])
    assert (second["handle"], second["offset"]) == ("4306-1757029388081097", "0_0")
    assert (third["handle"], third["offset"]) == ("4306-1757029388081097", "0_inf")
    assert fourth["offset"] == "26800584_4"


async def test_case_03_an_up_to_date_offset_minus_one_reply_goes_live() -> None:
    # Electric never ends its first chunk up to date; Trigger.dev's native backend does, and
    # answers one more non-live request with the whole snapshot again. Like the official
    # client, any up-to-date completes the sync: the next request is live.
    script = Script(
        shape_reply([change(1, id="1")], offset="0_0", done=True),
        shape_reply(offset="0_0", cursor="1", done=True),
    )
    async with ScriptedServer(script) as server:
        pages = await take(server.url, 2, pages=True)
    assert pages[0].up_to_date and [c.key for c in pages[0].changes]
    assert server.requests[1].params["live"] == "true"
    assert server.requests[1].params["offset"] == "0_0"


async def test_case_04_never_live_before_an_up_to_date() -> None:
    script = Script(
        snapshot(change(1, id="1"), offset="0_0"),
        shape_reply([change(2, id="2")], offset="0_1"),
        shape_reply([change(3, id="3")], offset="0_2"),
        shape_reply(offset="0_inf", done=True),
        shape_reply(offset="0_inf", cursor="5", done=True),
    )
    async with ScriptedServer(script) as server:
        await take(server.url, 5, pages=True)
    lives = [r.params.get("live") for r in server.requests[:5]]
    assert lives == [None, None, None, None, "true"]


async def test_case_05_live_requests_carry_the_latest_cursor() -> None:
    script = Script(
        snapshot(),
        shape_reply(offset="0_inf", done=True),
        shape_reply(offset="5_0", cursor="49694000", done=True),
        shape_reply(offset="6_0", cursor="49694020", done=True),
        shape_reply(offset="7_0", cursor="49694040", done=True),
    )
    async with ScriptedServer(script) as server:
        await take(server.url, 5, pages=True)
    live = [r.params for r in server.requests if r.params.get("live") == "true"]
    assert live[0]["cursor"] == ""
    assert live[1]["cursor"] == "49694000"
    assert live[2]["cursor"] == "49694020"


async def test_case_06_boolean_params_are_lowercase() -> None:
    script = Script(snapshot(), shape_reply(offset="0_inf", done=True), live_reply())
    async with ScriptedServer(script) as server:
        shape = items_shape(server.url, params={"flag": True, "other": False})
        await take(server.url, 3, shape=shape, pages=True)
    assert server.requests[0].params["flag"] == "true"
    assert server.requests[0].params["other"] == "false"
    assert server.requests[2].params["live"] == "true"


async def test_case_07_where_params_are_numbered_from_one() -> None:
    shape = ShapeDefinition(
        "http://x/v1/shape", table="t", where="a=$1 or b=$2", where_params=["a", 2]
    )
    assert shape.query_params()["params[1]"] == "a"
    assert shape.query_params()["params[2]"] == "2"
    mapped = ShapeDefinition("http://x/v1/shape", table="t", where="a=$1", where_params={"1": "v"})
    assert mapped.query_params()["params[1]"] == "v"
    with pytest.raises(ShapeDefinitionError, match="sequentially"):
        ShapeDefinition("http://x/v1/shape", table="t", where="a=$2", where_params={2: "v"})
    with pytest.raises(ShapeDefinitionError, match="numbered"):
        ShapeDefinition("http://x/v1/shape", table="t", where="a=$1", where_params={"x": "v"})


async def test_case_08_columns_are_quoted_identifiers() -> None:
    shape = ShapeDefinition(
        "http://x/v1/shape", table="t", columns=["id", "Status-Check", 'we"ird', "a,b"]
    )
    assert shape.query_params()["columns"] == '"id","Status-Check","we""ird","a,b"'
    with pytest.raises(ShapeDefinitionError):
        ShapeDefinition("http://x/v1/shape", table="t", columns=[])
    with pytest.raises(ShapeDefinitionError):
        ShapeDefinition("http://x/v1/shape", table="t", columns="id,title")  # type: ignore[arg-type]


async def test_case_09_query_params_are_sorted() -> None:
    script = Script(snapshot(), shape_reply(offset="0_inf", done=True), live_reply())
    async with ScriptedServer(script) as server:
        shape = items_shape(server.url, where="id=$1", where_params=["1"], params={"zeta": "1"})
        await take(server.url, 3, shape=shape, pages=True)
    for request in server.requests:
        assert request.param_names == sorted(request.param_names)


async def test_case_10_long_poll_timeout_is_not_an_error() -> None:
    timeout_reply = shape_reply(
        offset="0_inf", cursor="100", done=True, extra_headers={"electric-has-data": "false"}
    )
    script = Script(
        snapshot(),
        shape_reply(offset="0_inf", done=True),
        timeout_reply,
        shape_reply([change(1, id="1")], offset="9_0", cursor="120", done=True),
    )
    recorder = Recorder()
    async with ScriptedServer(script) as server:
        batches = await take(server.url, 2, recorder=recorder)
    # The keep-alive is not a batch; the client re-polled at once with the same offset.
    assert [len(b.changes) for b in batches] == [0, 1]
    repoll = server.requests[3].params
    assert (repoll["offset"], repoll["cursor"], repoll["live"]) == ("0_inf", "100", "true")
    assert recorder.sleeps == []


async def test_case_11_legacy_204_means_up_to_date() -> None:
    script = Script(
        snapshot(),
        shape_reply(offset="0_inf", done=True),
        Reply(status=204),
        shape_reply([change(1, id="1")], offset="9_0", cursor="3", done=True),
    )
    async with ScriptedServer(script) as server:
        pages = await take(server.url, 4, pages=True)
    assert pages[2].up_to_date and pages[2].changes == []
    assert server.requests[3].params["offset"] == "0_inf"
    assert server.requests[3].params["live"] == "true"
    assert len(pages[3].changes) == 1


async def test_case_12_live_watchdog_reissues_a_hung_request() -> None:
    script = Script(
        snapshot(),
        shape_reply(offset="0_inf", done=True),
        Reply(hang=True),
        shape_reply([change(1, id="1")], offset="9_0", cursor="3", done=True),
    )
    options = StreamOptions(live_timeout=0.3)
    recorder = Recorder()
    async with ScriptedServer(script) as server:
        batches = await take(server.url, 2, options=options, recorder=recorder)
    assert len(batches[1].changes) == 1
    hung, again = server.requests[2], server.requests[3]
    assert hung.target == again.target
    assert "live-timeout" in recorder.kinds()


async def test_case_12_live_timeout_is_above_the_server_hold() -> None:
    assert StreamOptions().live_timeout > 20


# -- 409 and stale caches ---------------------------------------------------------------


async def test_case_13_409_resets_and_refetches_with_the_new_handle() -> None:
    script = Script(
        snapshot(change(1, id="1", title="old"), handle="h1"),
        shape_reply([change(2, id="2")], handle="h1", offset="0_1"),  # pending, not up to date
        Reply(409, {"electric-handle": "h2"}, [{"headers": {"control": "must-refetch"}}]),
        snapshot(change(1, id="1", title="new"), handle="h2"),
        shape_reply(handle="h2", offset="0_inf", done=True),
    )
    recorder = Recorder()
    async with ScriptedServer(script) as server:
        batches = await take(server.url, 1, recorder=recorder)
    (batch,) = batches
    assert batch.reset
    assert [c.value for c in batch.changes] == [{"id": 1, "title": "new"}]
    after = server.requests[3].params
    assert after["offset"] == "-1"
    assert after["handle"] == "h2"
    assert "cache-buster" in after
    assert "cursor" not in after and "live" not in after
    assert "must-refetch" in recorder.kinds()
    assert batch.position.handle == "h2"


async def test_case_13_each_409_gets_a_fresh_cache_buster() -> None:
    conflict = Reply(409, {"electric-handle": "h2"}, [{"headers": {"control": "must-refetch"}}])
    script = Script(
        snapshot(handle="h1"),
        conflict,
        snapshot(handle="h2"),
        Reply(409, {"electric-handle": "h3"}, [{"headers": {"control": "must-refetch"}}]),
        snapshot(handle="h3"),
        shape_reply(handle="h3", offset="0_inf", done=True),
    )
    async with ScriptedServer(script) as server:
        await take(server.url, 1)
    busters = [r.params.get("cache-buster") for r in server.requests]
    assert busters[2] and busters[4] and busters[2] != busters[4]
    targets = [r.target for r in server.requests]
    assert targets[2] not in targets[:2]
    assert targets[4] not in targets[:4]


async def test_case_14_409_without_handle_still_refetches_without_the_old_handle() -> None:
    script = Script(
        snapshot(handle="h1"),
        Reply(409, {}, [{"headers": {"control": "must-refetch"}}]),
        snapshot(handle="h2"),
        shape_reply(handle="h2", offset="0_inf", done=True),
    )
    async with ScriptedServer(script) as server:
        await take(server.url, 1)
    after = server.requests[2].params
    assert after["offset"] == "-1"
    assert "handle" not in after
    assert after["expired_handle"] == "h1"
    assert after["cache-buster"]


async def test_case_15_rows_in_a_409_body_are_never_delivered() -> None:
    script = Script(
        snapshot(handle="h1"),
        Reply(
            409,
            {"electric-handle": "h2"},
            [change(666, id="666"), {"headers": {"control": "must-refetch"}}],
        ),
        snapshot(change(1, id="1"), handle="h2"),
        shape_reply(handle="h2", offset="0_inf", done=True),
    )
    async with ScriptedServer(script) as server:
        pages = await take(server.url, 4, pages=True)
    keys = [c.key for p in pages for c in p.changes]
    assert keys == ['"public"."items"/"1"']


async def test_case_16_stale_cached_response_is_ignored_and_retried() -> None:
    script = Script(
        snapshot(handle="h1"),
        Reply(409, {"electric-handle": "h2"}, [{"headers": {"control": "must-refetch"}}]),
        snapshot(change(9, id="9"), handle="h1"),  # a cache replaying the dead handle
        snapshot(change(1, id="1"), handle="h2"),
        shape_reply(handle="h2", offset="0_inf", done=True),
    )
    recorder = Recorder()
    async with ScriptedServer(script) as server:
        batches = await take(server.url, 1, recorder=recorder)
    assert [c.value["id"] for c in batches[0].changes] == [1]
    assert "stale" in recorder.kinds()
    stale_try, retry = server.requests[2].params, server.requests[3].params
    assert retry["cache-buster"] != stale_try["cache-buster"]
    assert batches[0].position.handle == "h2"


async def test_case_16_endless_stale_replies_end_in_a_clear_error() -> None:
    def cache_stuck_on_h1(request: Request) -> Reply:
        if request.params["offset"] == "-1":
            return snapshot(handle="h1")
        return Reply(409, {"electric-handle": "h2"}, [{"headers": {"control": "must-refetch"}}])

    async with ScriptedServer(cache_stuck_on_h1) as server:
        with pytest.raises(StaleResponseError, match="expired handle"):
            await take(server.url, 1)
    assert len(server.requests) < 30


# -- retries and errors -------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_case_17_retryable_statuses_are_retried(status: int) -> None:
    script = Script(
        Reply(status, {}, {"error": "busy"}),
        Reply(status, {}, {"error": "busy"}),
        snapshot(change(1, id="1")),
        shape_reply(offset="0_inf", done=True),
    )
    recorder = Recorder()
    async with ScriptedServer(script) as server:
        batches = await take(server.url, 1, recorder=recorder)
    assert len(batches[0].changes) == 1
    assert recorder.kinds().count("retry") == 2
    assert [e.status for e in recorder.events] == [status, status]
    # Retried with the very same request.
    assert server.requests[0].target == server.requests[1].target == server.requests[2].target


async def test_case_17_retry_after_seconds_is_a_floor() -> None:
    script = Script(
        Reply(503, {"retry-after": "7"}, {"message": "overloaded"}),
        snapshot(),
        shape_reply(offset="0_inf", done=True),
    )
    recorder = Recorder()
    async with ScriptedServer(script) as server:
        await take(server.url, 1, recorder=recorder)
    assert recorder.sleeps[0] >= 7.0


async def test_case_17_retry_after_http_date_is_a_floor() -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    script = Script(
        Reply(429, {"retry-after": format_datetime(when, usegmt=True)}, {"error": "slow down"}),
        snapshot(),
        shape_reply(offset="0_inf", done=True),
    )
    recorder = Recorder()
    async with ScriptedServer(script) as server:
        await take(server.url, 1, recorder=recorder)
    assert 27.0 <= recorder.sleeps[0] <= 31.0


async def test_case_17_network_errors_are_retried() -> None:
    script = Script(
        Reply(
            200,
            {"electric-handle": "h1", "electric-offset": "0_0", "electric-schema": "{}"},
            b"[" + b" " * 100 + b"]",
            drop_after=10,
        ),
        snapshot(change(1, id="1")),
        shape_reply(offset="0_inf", done=True),
    )
    recorder = Recorder()
    async with ScriptedServer(script) as server:
        batches = await take(server.url, 1, recorder=recorder)
    assert len(batches[0].changes) == 1
    assert recorder.kinds() == ["retry"]
    assert "network error" in recorder.events[0].message


async def test_case_17_backoff_is_exponential_full_jitter() -> None:
    def always_busy(request: Request) -> Reply:
        return Reply(503, {}, {"message": "down"})

    recorder = Recorder()
    options = StreamOptions(backoff=Backoff(initial=1.0, maximum=8.0, max_retries=12))
    async with ScriptedServer(always_busy) as server:
        with pytest.raises(RetriesExhaustedError, match="gave up after 12 retries"):
            await take(server.url, 1, options=options, recorder=recorder)
    caps = [min(1.0 * 2**i, 8.0) for i in range(12)]
    assert all(0 <= d <= cap for d, cap in zip(recorder.sleeps, caps, strict=True))
    assert len(server.requests) == 13


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_case_18_client_errors_are_not_retried(status: int) -> None:
    body = {"message": "Invalid request", "errors": {"where": ["bad where"]}}
    async with ScriptedServer(Script(Reply(status, {}, body))) as server:
        with pytest.raises(UpstreamError) as caught:
            await take(server.url, 1)
    assert caught.value.status == status
    assert len(server.requests) == 1
    assert "bad where" in str(caught.value)


async def test_case_18_error_hook_retries_from_the_current_offset() -> None:
    script = Script(
        snapshot(change(1, id="1")),
        shape_reply(offset="0_inf", done=True),
        Reply(401, {}, {"error": "token expired"}),
        shape_reply([change(2, id="2")], offset="5_0", cursor="1", done=True),
    )
    seen: list[Exception] = []

    def refresh_token(error: Exception) -> ErrorRecovery:
        seen.append(error)
        return ErrorRecovery(headers={"authorization": "Bearer fresh"})

    async with ScriptedServer(script) as server:
        batches = await take(server.url, 2, on_error=refresh_token)
    assert isinstance(seen[0], UpstreamError) and seen[0].status == 401
    retried = server.requests[3]
    assert retried.params["offset"] == "0_inf"  # not reset to -1
    assert retried.headers["authorization"] == "Bearer fresh"
    assert [c.value["id"] for c in batches[1].changes] == [2]


async def test_case_18_error_hook_retries_are_bounded() -> None:
    def always_forbidden(request: Request) -> Reply:
        return Reply(403, {}, {"error": "Unauthorized"})

    options = StreamOptions(backoff=FAST.backoff, max_error_retries=4)
    async with ScriptedServer(always_forbidden) as server:
        with pytest.raises(UpstreamError):
            await take(server.url, 1, options=options, on_error=lambda e: ErrorRecovery())
    assert len(server.requests) == 5


@pytest.mark.parametrize(
    ("missing", "live"),
    [
        ("electric-handle", False),
        ("electric-offset", False),
        ("electric-schema", False),
        ("electric-cursor", True),
    ],
)
async def test_case_19_missing_headers_fail_loudly(missing: str, live: bool) -> None:
    bad = shape_reply(offset="5_0", cursor="1" if live else None, done=True)
    del bad.headers[missing]
    replies = [snapshot(), shape_reply(offset="0_inf", done=True)] if live else []
    async with ScriptedServer(Script(*replies, bad)) as server:
        with pytest.raises(MissingHeadersError, match="proxy") as caught:
            await take(server.url, 5, on_error=lambda e: ErrorRecovery())
    assert missing in caught.value.missing
    assert len(server.requests) == len(replies) + 1  # never retried, even with a hook


# -- values -------------------------------------------------------------------------------


async def test_case_20_schema_is_adopted_once_until_must_refetch() -> None:
    text_title = {"id": {"type": "int4"}, "title": {"type": "text"}}
    int_title = {"id": {"type": "int4"}, "title": {"type": "int4"}}
    script = Script(
        snapshot(change(1, id="1", title="1"), schema=text_title, handle="h1"),
        shape_reply(
            [change(2, id="2", title="2")], offset="0_inf", schema=int_title, handle="h1", done=True
        ),
        Reply(409, {"electric-handle": "h2"}, [{"headers": {"control": "must-refetch"}}]),
        snapshot(change(3, id="3", title="3"), schema=int_title, handle="h2"),
        shape_reply(offset="0_inf", schema=text_title, handle="h2", done=True),
    )
    async with ScriptedServer(script) as server:
        batches = await take(server.url, 2)
    assert [c.value["title"] for c in batches[0].changes] == ["1", "2"]  # text schema kept
    assert batches[1].reset
    assert [c.value["title"] for c in batches[1].changes] == [3]  # new schema after refetch
    assert batches[1].position.schema == int_title


async def test_case_21_values_are_parsed_by_schema_type() -> None:
    schema = {
        "id": {"type": "int8", "pk_index": 0},
        "f": {"type": "float8"},
        "n": {"type": "numeric"},
        "b1": {"type": "bool"},
        "b2": {"type": "bool"},
        "j": {"type": "jsonb"},
        "t": {"type": "timestamptz"},
    }
    row = change(
        "9007199254740993",
        id="9007199254740993",
        f="NaN",
        n="123.4500",
        b1="t",
        b2="false",
        j='{"a": [1, 2]}',
        t="2025-06-24 04:41:55.296+00",
    )
    script = Script(
        snapshot(row, schema=schema), shape_reply(offset="0_inf", done=True, schema=schema)
    )
    async with ScriptedServer(script) as server:
        batches = await take(server.url, 1)
    value = batches[0].changes[0].value
    assert value["id"] == 9007199254740993
    assert math.isnan(value["f"])
    assert value["n"] == Decimal("123.4500")
    assert value["b1"] is True and value["b2"] is False
    assert value["j"] == {"a": [1, 2]}
    assert value["t"] == "2025-06-24 04:41:55.296+00"


async def test_case_22_arrays_are_parsed_with_their_dims() -> None:
    schema = {
        "id": {"type": "int4"},
        "tags": {"type": "text", "dims": 1},
        "grid": {"type": "int4", "dims": 2},
    }
    row = change(1, id="1", tags='{a,"b c",NULL,"NULL"}', grid="{{1,2},{3,4}}")
    script = Script(
        snapshot(row, schema=schema), shape_reply(offset="0_inf", done=True, schema=schema)
    )
    async with ScriptedServer(script) as server:
        batches = await take(server.url, 1)
    value = batches[0].changes[0].value
    assert value["tags"] == ["a", "b c", None, "NULL"]
    assert value["grid"] == [[1, 2], [3, 4]]


async def test_case_23_null_in_not_null_column_is_reported() -> None:
    script = Script(snapshot(change(1, id=None)))
    async with ScriptedServer(script) as server:
        with pytest.raises(ValueParseError, match="'id'"):
            await take(server.url, 1, pages=True)


async def test_case_23_null_in_not_null_column_can_be_tolerated(caplog) -> None:
    script = Script(snapshot(change(1, id=None)), shape_reply(offset="0_inf", done=True))
    options = StreamOptions(backoff=FAST.backoff, strict_not_null=False)
    async with ScriptedServer(script) as server:
        with caplog.at_level(logging.WARNING):
            batches = await take(server.url, 1, options=options)
    assert batches[0].changes[0].value == {"id": None}
    assert "id" in caplog.text


# -- materialising ------------------------------------------------------------------------


async def test_case_24_materialise_by_key() -> None:
    script = Script(
        snapshot(change(1, id="1", title="a", done="false"), change(2, id="2", title="b")),
        shape_reply(
            [
                change(1, id="1", title="a2", done="false"),  # insert of an existing key
                change(2, "update", id="2", done="true"),
                change(3, "delete", id="3"),
            ],  # delete of a missing key
            offset="0_inf",
            done=True,
        ),
    )
    rows = ShapeRows()
    async with ScriptedServer(script) as server:
        for batch in await take(server.url, 1):
            rows.apply_batch(batch)
    assert rows.rows == {
        '"public"."items"/"1"': {"id": 1, "title": "a2", "done": False},
        '"public"."items"/"2"': {"id": 2, "title": "b", "done": True},
    }


async def test_case_25_primary_key_change_is_delete_then_insert() -> None:
    pk_change = [
        {
            "key": '"public"."items"/"1"',
            "value": {"id": "1"},
            "headers": {
                "operation": "delete",
                "key_change_to": '"public"."items"/"7"',
                "lsn": "9",
                "op_position": 0,
            },
        },
        {
            "key": '"public"."items"/"7"',
            "value": {"id": "7", "title": "a"},
            "headers": {
                "operation": "insert",
                "key_change_from": '"public"."items"/"1"',
                "lsn": "9",
                "op_position": 1,
                "last": True,
            },
        },
    ]
    script = Script(
        snapshot(change(1, id="1", title="a")),
        shape_reply(offset="0_inf", done=True),
        shape_reply(pk_change, offset="9_1", cursor="1", done=True),
    )
    rows = ShapeRows()
    async with ScriptedServer(script) as server:
        for batch in await take(server.url, 2):
            rows.apply_batch(batch)
    assert rows.rows == {'"public"."items"/"7"': {"id": 7, "title": "a"}}


async def test_case_26_replica_full_carries_whole_rows_and_old_values() -> None:
    script = Script(
        snapshot(change(1, id="1", title="a", done="false")),
        shape_reply(offset="0_inf", done=True),
        shape_reply(
            [
                change(
                    1,
                    "update",
                    id="1",
                    title="b",
                    done="true",
                    old_value={"title": "a", "done": "f"},
                ),
                change(1, "delete", id="1", title="b", done="t"),
            ],
            offset="9_2",
            cursor="1",
            done=True,
        ),
    )
    async with ScriptedServer(script) as server:
        batches = await take(server.url, 2, shape=items_shape(server.url, replica="full"))
    update, delete = batches[1].changes
    assert update.value == {"id": 1, "title": "b", "done": True}
    assert update.old_value == {"title": "a", "done": False}
    assert delete.value == {"id": 1, "title": "b", "done": True}
    assert server.requests[0].params["replica"] == "full"


# -- batching and positions ---------------------------------------------------------------


async def test_case_27_changes_are_released_only_at_up_to_date() -> None:
    tx = [
        {**change(1, id="1"), "headers": {"operation": "insert", "lsn": "10", "op_position": 0}},
        {**change(2, id="2"), "headers": {"operation": "insert", "lsn": "10", "op_position": 2}},
    ]
    tx_end = [
        {
            **change(3, id="3"),
            "headers": {"operation": "insert", "lsn": "10", "op_position": 4, "last": True},
        }
    ]
    script = Script(
        snapshot(),
        shape_reply(offset="0_inf", done=True),
        shape_reply(tx, offset="10_2", cursor="1"),  # a chunk ending mid-transaction
        shape_reply(tx_end, offset="10_4", done=True),
    )
    async with ScriptedServer(script) as server:
        batches = await take(server.url, 2)
    assert [c.value["id"] for c in batches[1].changes] == [1, 2, 3]
    assert batches[1].position.offset == "10_4"
    # After the mid-transaction chunk the client caught up with a non-live request.
    assert "live" not in server.requests[3].params


async def test_case_28_position_is_that_of_the_up_to_date_and_resumes_non_live() -> None:
    script = Script(
        snapshot(change(1, id="1"), handle="h9"),
        shape_reply([change(2, id="2")], handle="h9", offset="0_inf", done=True),
    )
    async with ScriptedServer(script) as server:
        (batch,) = await take(server.url, 1)
    assert (batch.position.handle, batch.position.offset) == ("h9", "0_inf")

    script = Script(shape_reply(handle="h9", offset="0_inf", done=True))
    async with ScriptedServer(script) as server:
        await take(server.url, 1, pages=True, position=batch.position)
    resumed = server.requests[0].params
    assert (resumed["handle"], resumed["offset"]) == ("h9", "0_inf")
    assert "live" not in resumed


async def test_case_29_unknown_control_and_event_messages_are_ignored() -> None:
    odd = [
        {"headers": {"control": "snapshot-end", "xmin": "1", "xmax": "2", "xip_list": []}},
        {"headers": {"control": "from-the-future"}},
        {"headers": {"event": "move-out", "patterns": [{"pos": 0, "value": "x"}]}},
        change(1, id="1"),
    ]
    script = Script(snapshot(*odd), shape_reply(offset="0_inf", done=True))
    async with ScriptedServer(script) as server:
        batches = await take(server.url, 1)
    assert [c.value for c in batches[0].changes] == [{"id": 1}]


async def test_case_30_changes_without_lsn_are_valid() -> None:
    bare = {"key": '"public"."items"/"1"', "value": {"id": "1"}, "headers": {"operation": "insert"}}
    script = Script(snapshot(bare), shape_reply(offset="0_inf", done=True))
    async with ScriptedServer(script) as server:
        batches = await take(server.url, 1)
    assert batches[0].changes[0].lsn is None
    assert batches[0].changes[0].last is False


async def test_case_31_keys_are_opaque() -> None:
    odd_keys = ['"public"."items"/"a//b"/"c"', '"public"."it..ems"/_', '"public"."items"/"a"/"b/c"']
    messages = [
        {"key": k, "value": {"id": str(i)}, "headers": {"operation": "insert"}}
        for i, k in enumerate(odd_keys)
    ]
    script = Script(snapshot(*messages), shape_reply(offset="0_inf", done=True))
    rows = ShapeRows()
    async with ScriptedServer(script) as server:
        for batch in await take(server.url, 1):
            rows.apply_batch(batch)
    assert sorted(rows.rows) == sorted(odd_keys)


async def test_case_32_live_mode_uses_long_poll_not_sse() -> None:
    # SSE is optional; this client follows live changes with long-polls only.
    script = Script(
        snapshot(),
        shape_reply(offset="0_inf", done=True),
        shape_reply(offset="0_inf", cursor="1", done=True),
    )
    async with ScriptedServer(script) as server:
        await take(server.url, 3, pages=True)
    live = server.requests[2]
    assert live.params["live"] == "true"
    assert "live_sse" not in live.params
    assert live.headers.get("accept") != "text/event-stream"


async def test_case_33_tight_loops_are_detected() -> None:
    def same_offset_forever(request: Request) -> Reply:
        return snapshot(offset="0_0")  # never advances, never up to date

    recorder = Recorder()
    async with ScriptedServer(same_offset_forever) as server:
        with pytest.raises(FastLoopError, match="tight request loops"):
            await take(server.url, 1000, pages=True, recorder=recorder)
    kinds = recorder.kinds()
    assert kinds.count("fast-loop") >= 4
    # The first detection refetched the shape from scratch.
    first = kinds.index("fast-loop")
    assert recorder.events[first].message.startswith("tight request loop detected")
    assert len(server.requests) < 100


async def test_case_33b_occasional_tight_loops_over_a_long_life_are_forgiven() -> None:
    # Each episode: a 409 sends the client back to a snapshot that loops at one offset for a
    # while, then completes; the client goes live again. Loops that end in a live request
    # are over, as the official client counts them: five episodes raise nothing.
    state = {"episodes": 0, "looped": 0}

    def episodes(request: Request) -> Reply:
        if request.params.get("live") == "true":
            state["episodes"] += 1
            state["looped"] = 0
            if state["episodes"] > 6:  # calm from now on: live keep-alives
                return shape_reply(
                    handle=f"h{state['episodes']}", offset="0_inf", cursor="1", done=True
                )
            handle = f"h{state['episodes'] + 1}"
            return Reply(
                409, {"electric-handle": handle}, [{"headers": {"control": "must-refetch"}}]
            )
        handle = f"h{state['episodes'] + 1}"
        state["looped"] += 1
        if state["looped"] <= 6:
            return snapshot(handle=handle, offset="0_0")  # stuck at 0_0 a while
        return shape_reply(handle=handle, offset="0_inf", done=True)

    recorder = Recorder()
    async with ScriptedServer(episodes) as server:
        await take(server.url, 200, pages=True, recorder=recorder, timeout=60)
    assert recorder.kinds().count("fast-loop") >= 6
    assert state["episodes"] > 6  # it went live after every one


async def test_case_34_offset_now_skips_history() -> None:
    script = Script(
        shape_reply(
            handle="h5",
            offset="26800584_4",
            done=True,
            extra_headers={"electric-has-data": "false"},
        ),
        shape_reply([change(1, id="1")], handle="h5", offset="26800590_0", cursor="1", done=True),
    )
    async with ScriptedServer(script) as server:
        pages = await take(server.url, 2, pages=True, position=Position(offset="now"))
    first, second = server.requests[0].params, server.requests[1].params
    assert first["offset"] == "now" and "live" not in first
    assert (second["offset"], second["live"], second["handle"]) == ("26800584_4", "true", "h5")
    assert pages[0].changes == [] and pages[0].up_to_date


# -- beyond the numbered cases ------------------------------------------------------------


async def test_offset_out_of_bounds_is_handled_like_a_reset() -> None:
    out_of_bounds = Reply(
        400,
        {},
        {"message": "Invalid request", "errors": {"offset": ["out of bounds for this shape"]}},
    )
    script = Script(
        out_of_bounds,
        snapshot(change(1, id="1"), handle="h2"),
        shape_reply(handle="h2", offset="0_inf", done=True),
    )
    async with ScriptedServer(script) as server:
        batches = await take(server.url, 1, position=Position(handle="h1", offset="77_0"))
    assert batches[0].reset
    assert [c.value["id"] for c in batches[0].changes] == [1]
    assert server.requests[1].params["offset"] == "-1"


async def test_invalid_stored_position_starts_over() -> None:
    script = Script(snapshot(change(1, id="1")), shape_reply(offset="0_inf", done=True))
    async with ScriptedServer(script) as server:
        batches = await take(
            server.url, 1, position=Position(handle="h1", offset="undefined_undefined")
        )
    assert batches[0].reset
    assert server.requests[0].params["offset"] == "-1"


async def test_reserved_params_are_rejected() -> None:
    for name in ("offset", "handle", "live", "cursor", "cache-buster", "subset__where"):
        with pytest.raises(ShapeDefinitionError, match="reserved"):
            ShapeDefinition("http://x/v1/shape", table="t", params={name: "1"})


async def test_secrets_are_redacted_from_errors() -> None:
    async with ScriptedServer(Script(Reply(401, {}, {"message": "Unauthorized"}))) as server:
        shape = items_shape(server.url, params={"secret": "s3cr3t-value"})
        with pytest.raises(UpstreamError) as caught:
            await take(server.url, 1, shape=shape)
    assert "s3cr3t-value" not in str(caught.value)
    assert "s3cr3t-value" not in (caught.value.url or "")
    assert "secret=***" in (caught.value.url or "")


async def test_a_non_array_body_is_malformed() -> None:
    bad = snapshot()
    bad.body = {"rows": []}
    async with ScriptedServer(Script(bad)) as server:
        with pytest.raises(MalformedResponseError, match="JSON array"):
            await take(server.url, 1, pages=True)


async def test_stream_stops_after_first_up_to_date_when_not_live() -> None:
    script = Script(snapshot(change(1, id="1")), shape_reply(offset="0_inf", done=True))
    async with ScriptedServer(script) as server, httpx.AsyncClient() as client:
        stream = ShapeStream(items_shape(server.url), client, options=StreamOptions(live=False))
        batches = [b async for b in stream]
    assert len(batches) == 1 and batches[0].up_to_date
    assert len(server.requests) == 2
