"""TaskRun → runs mapping: statuses, timestamps, errors, typed columns, partial updates."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replica.errors import MalformedResponseError
from replica.sources import (
    STATUS_MAP,
    RunMapper,
    iso_timestamp,
    public_status,
    serialized_error,
    taskrun,
)
from replica.sources.packets import format_utc, to_json_text
from replica.tables import RUNS
from tests.sources.helpers import message

pytestmark = pytest.mark.anyio

# -- statuses ------------------------------------------------------------------------------------

STATUSES = {
    "DELAYED": "DELAYED",
    "PENDING": "QUEUED",
    "PENDING_VERSION": "PENDING_VERSION",
    "WAITING_FOR_DEPLOY": "PENDING_VERSION",
    "DEQUEUED": "DEQUEUED",
    "EXECUTING": "EXECUTING",
    "WAITING_TO_RESUME": "WAITING",
    "RETRYING_AFTER_FAILURE": "EXECUTING",
    "PAUSED": "WAITING",
    "CANCELED": "CANCELED",
    "INTERRUPTED": "FAILED",
    "COMPLETED_SUCCESSFULLY": "COMPLETED",
    "COMPLETED_WITH_ERRORS": "FAILED",
    "SYSTEM_FAILURE": "SYSTEM_FAILURE",
    "CRASHED": "CRASHED",
    "EXPIRED": "EXPIRED",
    "TIMED_OUT": "TIMED_OUT",
}


@pytest.mark.parametrize(("db_status", "public"), sorted(STATUSES.items()))
async def test_every_status_is_mapped(db_status: str, public: str) -> None:
    assert public_status(db_status) == public
    [change] = await RunMapper().map([message("update", id="r1", status=db_status)])
    assert change.values == {"status": public, "db_status": db_status}


def test_status_map_is_exactly_the_17_statuses() -> None:
    assert dict(STATUS_MAP) == STATUSES


def test_unknown_status_is_queued_and_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert public_status("FROZEN_FOR_TESTS") == "QUEUED"
        assert public_status("FROZEN_FOR_TESTS") == "QUEUED"
    warnings = [r for r in caplog.records if "FROZEN_FOR_TESTS" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


# -- timestamps ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "stored"),
    [
        ("2026-08-20 09:14:03.512", "2026-08-20T09:14:03.512Z"),
        ("2026-08-20 09:14:31.2", "2026-08-20T09:14:31.200Z"),
        ("2026-08-20 09:14:31.25", "2026-08-20T09:14:31.250Z"),
        ("2026-08-20 09:14:31", "2026-08-20T09:14:31.000Z"),
        ("2026-08-20 09:14:03.123999", "2026-08-20T09:14:03.123Z"),  # truncated, not rounded
        ("2026-08-20T09:14:03.512", "2026-08-20T09:14:03.512Z"),
        ("2026-08-20T09:14:03.512Z", "2026-08-20T09:14:03.512Z"),
        ("2026-08-20 09:14:03.512+00", "2026-08-20T09:14:03.512Z"),
        ("2026-08-20 09:14:03.512+05:30", "2026-08-20T03:44:03.512Z"),
        ("2026-08-20 23:30:00-03", "2026-08-21T02:30:00.000Z"),
        ("2026-01-01 00:10:00.9999+0100", "2025-12-31T23:10:00.999Z"),
        ("2024-02-29 12:00:00", "2024-02-29T12:00:00.000Z"),
        ("0099-01-01 00:00:00", "0099-01-01T00:00:00.000Z"),
        (datetime(2026, 8, 20, 9, 14, 3, 512999), "2026-08-20T09:14:03.512Z"),
        (
            datetime(2026, 8, 20, 11, 14, 3, tzinfo=timezone(timedelta(hours=2))),
            "2026-08-20T09:14:03.000Z",
        ),
        (None, None),
    ],
)
def test_iso_timestamp(wire: Any, stored: str | None) -> None:
    assert iso_timestamp(wire) == stored


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "yesterday",
        "2026-08-20",
        "2026-13-01 00:00:00",
        "2026-02-30 00:00:00",
        "2025-02-29 00:00:00",
        "2026-08-20 24:00:00",
        "2026-08-20 10:60:00",
        "0000-01-01 00:00:00",
        "2026-08-20 09:14:03.1234567",
        "2026-08-20 09:14:03.",
        "infinity",
        " 2026-08-20 09:14:03",
        "2026-08-20 09:14:03 +00",
        "0001-01-01 00:00:00+01",
        123,
    ],
)
def test_iso_timestamp_refuses_junk(junk: Any) -> None:
    with pytest.raises(ValueError, match="timestamp") as info:
        iso_timestamp(junk)
    assert repr(junk)[:20] in str(info.value)


naive = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59))


def electric_text(value: datetime) -> str:
    """How Postgres prints a timestamp: trailing fractional zeros trimmed."""
    text = f"{value.year:04d}-{value:%m-%d %H:%M:%S}"
    return text + (f".{value.microsecond:06d}".rstrip("0") if value.microsecond else "")


def native_text(value: datetime) -> str:
    """How the native backend prints one: ISO with milliseconds, no zone."""
    return f"{value.year:04d}-{value:%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}"


@given(naive)
def test_iso_timestamp_round_trips_both_wire_formats(value: datetime) -> None:
    expected = f"{value.year:04d}-{value:%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"
    assert iso_timestamp(electric_text(value)) == expected
    assert iso_timestamp(native_text(value)) == expected
    assert iso_timestamp(value) == expected
    assert iso_timestamp(value.replace(tzinfo=timezone.utc)) == expected


@given(
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_iso_timestamp_converts_offsets(value: datetime, minutes: int) -> None:
    sign = "-" if minutes < 0 else "+"
    offset = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    utc = value - timedelta(minutes=minutes)
    assert iso_timestamp(electric_text(value) + offset) == format_utc(utc)


# -- errors ----------------------------------------------------------------------------------


def built_in(name: str, message: str, stack: str = "") -> dict[str, Any]:
    return {"type": "BUILT_IN_ERROR", "name": name, "message": message, "stackTrace": stack}


def internal_message(code: str) -> dict[str, str]:
    return {"message": f"trigger.dev internal error ({code})"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("null", None),
        (
            built_in("TypeError", "x is undefined", "TypeError: x\n  at f"),
            {
                "name": "TypeError",
                "message": "x is undefined",
                "stackTrace": "TypeError: x\n  at f",
            },
        ),
        ({"type": "BUILT_IN_ERROR", "message": "m"}, {"message": "m"}),
        (
            built_in(
                "UnexpectedExitError",
                "Unexpected exit with code -1 after signal SIGTERM",
                "got SIGTERM",
            ),
            internal_message("TASK_PROCESS_SIGTERM"),
        ),
        (
            built_in("UnexpectedExitError", "Unexpected exit with code -1", "SIGSEGV"),
            internal_message("TASK_PROCESS_SIGSEGV"),
        ),
        (
            built_in("UnexpectedExitError", "Unexpected exit with code -1", "SIGKILL"),
            internal_message("TASK_PROCESS_MAYBE_OOM_KILLED"),
        ),
        (
            built_in("UnexpectedExitError", "Unexpected exit with code -1", "SIGABRT"),
            internal_message("TASK_PROCESS_MAYBE_OOM_KILLED"),
        ),
        (
            built_in("UnexpectedExitError", "Unexpected exit with code -1", "x" * 100 + "SIGKILL"),
            internal_message("TASK_PROCESS_EXITED_WITH_NON_ZERO_CODE"),  # beyond 100 chars
        ),
        (
            built_in("UnexpectedExitError", "Unexpected exit with code 1", "SIGKILL"),
            {
                "name": "UnexpectedExitError",
                "message": "Unexpected exit with code 1",
                "stackTrace": "SIGKILL",
            },
        ),
        (
            built_in("Error", "ffmpeg was killed with signal SIGKILL"),
            internal_message("TASK_PROCESS_OOM_KILLED"),
        ),
        (
            built_in("OutOfMemoryError", "MANUAL_OOM_KILL_ERROR"),
            internal_message("TASK_PROCESS_OOM_KILLED"),
        ),
        (
            built_in("TriggerApiError", "Deadlock detected: a -> b", "trace"),
            {
                "name": "Concurrency Deadlock Error",
                "message": "Deadlock detected: a -> b",
                "stackTrace": "",
            },
        ),
        ({"type": "STRING_ERROR", "raw": "it broke"}, {"message": "it broke"}),
        ({"type": "CUSTOM_ERROR", "raw": '{"code":42}'}, {"message": '{"code":42}'}),
        ({"type": "CUSTOM_ERROR", "raw": {"code": 42}}, {"message": '{"code": 42}'}),
        (
            {"type": "INTERNAL_ERROR", "code": "MAX_DURATION_EXCEEDED", "message": "dropped"},
            internal_message("MAX_DURATION_EXCEEDED"),
        ),
        (
            {
                "type": "INTERNAL_ERROR",
                "code": "TASK_PROCESS_EXITED_WITH_NON_ZERO_CODE",
                "message": "after signal SIGTERM",
            },
            internal_message("TASK_PROCESS_SIGTERM"),
        ),
        (
            {
                "type": "INTERNAL_ERROR",
                "code": "TASK_PROCESS_EXITED_WITH_NON_ZERO_CODE",
                "message": "code 1",
            },
            internal_message("TASK_PROCESS_EXITED_WITH_NON_ZERO_CODE"),
        ),
        ({"type": "INTERNAL_ERROR"}, internal_message("UNKNOWN")),
        ('{"type": "STRING_ERROR", "raw": "from text"}', {"message": "from text"}),
        ("plain words", {"message": "plain words"}),
        ('"quoted"', {"message": "quoted"}),
        ([1, 2], {"message": "[1, 2]"}),
        (7, {"message": "7"}),
        (
            {"message": "odd", "name": "N", "stackTrace": "s", "extra": 1},
            {"message": "odd", "name": "N", "stackTrace": "s"},
        ),
        ({"type": "NEW_KIND", "detail": 1}, {"message": '{"type": "NEW_KIND", "detail": 1}'}),
    ],
)
def test_serialized_error(raw: Any, expected: Any) -> None:
    assert serialized_error(raw) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)
error_like = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["BUILT_IN_ERROR", "STRING_ERROR", "CUSTOM_ERROR", "INTERNAL_ERROR", "X"]
        )
    },
    optional={k: json_values for k in ("name", "message", "stackTrace", "raw", "code")},
)


@given(st.one_of(json_values, error_like, error_like.map(json.dumps), st.text()))
def test_serialized_error_never_raises(raw: Any) -> None:
    error = serialized_error(raw)
    if error is not None:
        assert isinstance(error["message"], str)
        assert set(error) <= {"message", "name", "stackTrace"}
        to_json_text(error)


# -- the mapper: typed columns and partial updates ------------------------------------------------

FULL_ROW: dict[str, Any] = {
    # A native-backend row: full, with ISO timestamps, "t"/"f" and quoted array elements.
    "id": "cmx1",
    "taskIdentifier": "t",
    "createdAt": "2026-06-06T10:05:30.123",
    "updatedAt": "2026-06-06T10:05:31.000",
    "startedAt": None,
    "delayUntil": "2026-06-06T11:00:00.000",
    "queuedAt": None,
    "expiredAt": None,
    "completedAt": None,
    "friendlyId": "run_cmx1",
    "number": "7",
    "isTest": "t",
    "status": "DELAYED",
    "usageDurationMs": "0",
    "costInCents": "1e-3",
    "baseCostInCents": "0",
    "ttl": None,
    "payload": '{"a":1}',
    "payloadType": "application/json",
    "metadata": None,
    "metadataType": "application/json",
    "output": None,
    "outputType": "application/json",
    "runTags": '{"a b","c\\"d"}',
    "error": None,
    "realtimeStreams": '{"default"}',
    "idempotencyKey": "never-stored",
}


async def test_native_full_row_update_sets_every_column() -> None:
    [change] = await RunMapper().map([message("update", **FULL_ROW)])
    assert change.op == "update" and change.key == "cmx1"
    values = change.values
    assert values["id"] == "run_cmx1" and values["is_test"] == 1 and values["number"] == 7
    assert values["cost_in_cents"] == 0.001
    assert values["delayed_until"] == "2026-06-06T11:00:00.000Z"
    assert values["tags"] == '["a b","c\\"d"]' and values["realtime_streams"] == '["default"]'
    assert values["payload"] == '{"a":1}' and values["payload_ref"] is None
    assert set(values) == set(RUNS.column_names) - {"internal_id", "idempotency_key", "detached_at"}


async def test_insert_carries_the_internal_id_and_never_idempotency_or_detached() -> None:
    [change] = await RunMapper().map([message("insert", **FULL_ROW)])
    assert change.values["internal_id"] == "cmx1"
    assert set(change.values) == set(RUNS.column_names) - {"idempotency_key", "detached_at"}


async def test_skipped_columns_are_absent_from_an_insert() -> None:
    row = {
        k: v
        for k, v in FULL_ROW.items()
        if k not in {"payload", "payloadType", "runTags", "number"}
    }
    [change] = await RunMapper().map([message("insert", **row)])
    assert not {"payload", "payload_type", "payload_ref", "tags", "number"} & set(change.values)


async def test_delete_has_no_values() -> None:
    [change] = await RunMapper().map([message("delete", id="cmx1")])
    assert (change.op, change.key, change.values) == ("delete", "cmx1", {})


async def test_update_carries_only_what_changed() -> None:
    [change] = await RunMapper().map(
        [message("update", id="cmx1", updatedAt="2026-06-06 10:05:31", isTest=False)]
    )
    assert change.values == {"updated_at": "2026-06-06T10:05:31.000Z", "is_test": 0}


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"operation": "x"}, "no string 'id'"),
        ({"id": 5}, "no string 'id'"),
        ({"id": ""}, "no string 'id'"),
        ({"id": "c", "number": "abc"}, "'number' must be an integer"),
        ({"id": "c", "number": True}, "'number' must be an integer"),
        ({"id": "c", "usageDurationMs": "1.5"}, "'usageDurationMs' must be an integer"),
        ({"id": "c", "number": "--5"}, "'number' must be an integer"),
        ({"id": "c", "number": "-"}, "'number' must be an integer"),
        ({"id": "c", "costInCents": "cheap"}, "'costInCents' must be a number"),
        ({"id": "c", "isTest": "yes"}, "'isTest' must be a boolean"),
        ({"id": "c", "createdAt": "soon"}, "'createdAt' must be a timestamp"),
        ({"id": "c", "runTags": 5}, "'runTags' must be a one-dimensional text array"),
        ({"id": "c", "runTags": [["a"]]}, "'runTags' must be a one-dimensional text array"),
        ({"id": "c", "runTags": "{a,"}, "'runTags' must be a Postgres text array"),
        ({"id": "c", "status": None}, "'status' must be a value"),
        ({"id": "c", "status": 3}, "'status' must be a string"),
        ({"id": "c", "taskIdentifier": None}, "'taskIdentifier' must be a value"),
        ({"id": "c", "payload": 5}, "'payload' must be a string"),
        ({"id": "c", "payloadType": 5}, "'payloadType' must be a string"),
    ],
)
async def test_malformed_values_name_the_run_and_column(value: dict[str, Any], words: str) -> None:
    with pytest.raises(MalformedResponseError) as info:
        await RunMapper().map([message("update", **value)])
    assert words in str(info.value)
    if "id" in value and value["id"] == "c":
        assert "with internal id c" in str(info.value)


async def test_insert_without_a_never_skipped_column_is_malformed() -> None:
    row = {k: v for k, v in FULL_ROW.items() if k != "friendlyId"}
    with pytest.raises(MalformedResponseError, match="'friendlyId' must be present"):
        await RunMapper().map([message("insert", **row)])


async def test_errors_name_the_friendly_id_once_known() -> None:
    mapper = RunMapper()
    await mapper.map([message("insert", **FULL_ROW)])
    with pytest.raises(MalformedResponseError, match="run run_cmx1: column 'number'"):
        await mapper.map([message("update", id="cmx1", number="x")])


async def test_malformed_packet_json_is_kept_as_a_string(caplog: pytest.LogCaptureFixture) -> None:
    [change] = await RunMapper().map(
        [
            message(
                "update",
                id="cmx1",
                friendlyId="run_cmx1",
                payload="{oops",
                payloadType="application/json",
            )
        ]
    )
    assert change.values["payload"] == '"{oops"'
    assert "run run_cmx1, payload" in caplog.text and "not valid JSON" in caplog.text


async def test_error_json_text_and_bad_error_shapes_are_lenient() -> None:
    [change] = await RunMapper().map(
        [message("update", id="c", error='{"type": "STRING_ERROR", "raw": "x"}')]
    )
    assert change.values["error"] == '{"message":"x"}'
    [change] = await RunMapper().map([message("update", id="c", error={"weird": True})])
    assert json.loads(change.values["error"]) == {"message": '{"weird": true}'}
    [change] = await RunMapper().map(
        [message("update", id="c", error=None, runTags=None, realtimeStreams=None)]
    )
    assert change.values == {"error": None, "tags": "[]", "realtime_streams": "[]"}


class Lookup:
    """A stand-in for the store: stored runs rows by internal id, with a call log."""

    def __init__(self, **rows: dict[str, Any]) -> None:
        self.rows = rows
        self.calls: list[str] = []

    def __call__(self, key: str) -> dict[str, Any] | None:
        self.calls.append(key)
        return self.rows.get(key)


SUPER_OUTPUT = '{"json":{"at":"2026-01-01T00:00:00.000Z"},"meta":{"values":{"at":["Date"]}}}'


async def test_output_without_its_type_uses_the_lookup() -> None:
    lookup = Lookup(c1={"id": "run_c1", "output_type": "application/super+json"})
    [change] = await RunMapper(lookup=lookup).map([message("update", id="c1", output=SUPER_OUTPUT)])
    assert change.values == {"output": '{"at":"2026-01-01T00:00:00.000Z"}', "output_ref": None}
    assert lookup.calls == ["c1"]


async def test_metadata_only_update_uses_the_lookup_type() -> None:
    lookup = Lookup(c1={"id": "run_c1", "metadata_type": "text/plain"})
    [change] = await RunMapper(lookup=lookup).map([message("update", id="c1", metadata="not json")])
    assert change.values == {"metadata": '"not json"'}
    # With no type known, metadata is left out, as the SDK leaves it (it parses metadata
    # only with its type).
    [change] = await RunMapper(lookup=Lookup()).map(
        [message("update", id="c2", metadata='{"p":1}')]
    )
    assert change.values == {"metadata": None}


async def test_types_seen_on_the_wire_win_over_the_lookup() -> None:
    lookup = Lookup(c1={"id": "run_c1", "output_type": "text/plain"})
    mapper = RunMapper(lookup=lookup)
    first, second = await mapper.map(
        [
            message("update", id="c1", outputType="application/super+json"),
            message("update", id="c1", output=SUPER_OUTPUT),
        ]
    )
    assert first.values == {"output_type": "application/super+json"}
    assert second.values["output"] == '{"at":"2026-01-01T00:00:00.000Z"}'
    assert lookup.calls == []


async def test_types_are_remembered_for_the_most_recent_runs_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The memory of wire types is bounded: a run seen long ago (or deleted since) goes to
    the lookup; a run seen again is remembered afresh and stays."""
    monkeypatch.setattr(taskrun, "_MAX_FACTS", 3)
    lookup = Lookup(c1={"id": "run_c1", "output_type": "text/plain"})
    mapper = RunMapper(lookup=lookup)
    for run in ("c1", "c2", "c3", "c1", "c4"):  # c1 seen again before c4 comes
        await mapper.map([message("update", id=run, outputType="application/super+json")])
    later = await mapper.map([message("update", id=f"c{i}", output=SUPER_OUTPUT) for i in (1, 2)])
    assert later[0].values["output"] == '{"at":"2026-01-01T00:00:00.000Z"}'  # remembered
    assert lookup.calls == ["c2"]  # c2 was the least recently seen: forgotten
    await mapper.map([message("delete", id="c1")])
    await mapper.map([message("update", id="c1", output=SUPER_OUTPUT)])
    assert lookup.calls == ["c2", "c1"]


async def test_a_packet_of_unknown_type_is_its_text() -> None:
    # The SDK's parsePacket returns the data itself for a type it does not know (none too).
    [change] = await RunMapper().map([message("update", id="c1", payload='{"a":1}')])
    assert change.values == {"payload": '"{\\"a\\":1}"', "payload_ref": None}


async def test_empty_packets_are_null() -> None:
    [change] = await RunMapper().map(
        [
            message(
                "update",
                id="c1",
                payload="",
                payloadType="application/json",
                output=None,
                outputType="application/store",
            )
        ]
    )
    assert change.values == {
        "payload": None,
        "payload_type": "application/json",
        "payload_ref": None,
        "output": None,
        "output_type": "application/store",
        "output_ref": None,
    }


async def test_a_lone_store_type_is_not_stored() -> None:
    [change] = await RunMapper().map(
        [
            message(
                "update", id="c1", outputType="application/store", metadataType="application/json"
            )
        ]
    )
    assert change.values == {"metadata_type": "application/json"}


async def test_offloaded_packets_without_a_fetcher_keep_their_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    [change] = await RunMapper().map(
        [
            message(
                "update",
                id="c1",
                output="run_c1-1/output.json",
                outputType="application/store",
                metadata="m",
                metadataType="application/store",
            )
        ]
    )
    assert change.values == {
        "output": None,
        "output_type": "application/store",
        "output_ref": "run_c1-1/output.json",
        "metadata": None,
        "metadata_type": "application/store",
    }
    assert "not fetched: no fetcher" in caplog.text
    assert "offloaded metadata cannot be fetched" in caplog.text
