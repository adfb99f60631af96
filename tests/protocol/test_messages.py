"""Body parsing, shape definitions and retry timing: pure unit tests."""

from __future__ import annotations

import contextlib
import json
import random
import time
from email.utils import formatdate

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from replica.errors import MalformedResponseError, ReplicaError, ShapeDefinitionError
from replica.protocol import (
    Backoff,
    ShapeDefinition,
    messages,
    parse_body,
    parse_retry_after,
    redact_url,
)
from replica.protocol.backoff import BackoffTimer
from replica.protocol.values import RowParser

SCHEMA = {"id": {"type": "int8", "not_null": True}, "tags": {"type": "text", "dims": 1}}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)

message_like = st.fixed_dictionaries(
    {},
    optional={
        "key": json_values,
        "value": st.dictionaries(st.sampled_from(["id", "tags", "x"]), json_values, max_size=3),
        "old_value": json_values,
        "headers": st.fixed_dictionaries(
            {},
            optional={
                "operation": st.sampled_from(["insert", "update", "delete", "upsert"])
                | json_values,
                "control": st.sampled_from(["up-to-date", "must-refetch", "x"]) | json_values,
                "global_last_seen_lsn": json_values,
            },
        )
        | json_values,
    },
)


@given(st.lists(message_like, max_size=5) | json_values)
def test_junk_bodies_raise_only_typed_errors(body: object) -> None:
    raw = json.dumps(body).encode()  # the stdlib encodes integers of any size
    try:
        parsed = parse_body(raw, RowParser(SCHEMA))
    except ReplicaError as exc:
        if not isinstance(exc, MalformedResponseError):
            raise
        return
    for change in parsed.changes:
        assert isinstance(change.key, str)
        assert change.operation in ("insert", "update", "delete")


@given(st.binary(max_size=64))
def test_junk_bytes_raise_only_typed_errors(raw: bytes) -> None:
    with contextlib.suppress(MalformedResponseError):
        parse_body(raw)


def test_body_with_control_messages() -> None:
    body = [
        {"key": "k1", "value": {"id": "5", "tags": "{a,b}"}, "headers": {"operation": "insert"}},
        {"headers": {"control": "snapshot-end", "xmin": "1"}},
        {"headers": {"control": "up-to-date", "global_last_seen_lsn": "26800584"}},
    ]
    parsed = parse_body(orjson.dumps(body), RowParser(SCHEMA))
    assert parsed.up_to_date and parsed.snapshot_end
    assert parsed.lsn == "26800584"
    assert parsed.changes[0].value == {"id": 5, "tags": ["a", "b"]}


def test_parse_errors_name_the_message_and_key() -> None:
    body = [{"key": "the-key", "value": {"id": "x"}, "headers": {"operation": "insert"}}]
    with pytest.raises(MalformedResponseError, match=r"message 0 \(key 'the-key'\).*'id'"):
        parse_body(orjson.dumps(body), RowParser(SCHEMA))


def test_empty_body_is_no_messages() -> None:
    assert parse_body(b"").changes == []
    assert parse_body(b"[]").changes == []


# -- long bodies, decoded in pieces ---------------------------------------------------------

#: Text that looks like the place between two messages, wherever it lands in a body.
tricky_text = st.text(alphabet=st.sampled_from(["}", ",", "{", '"', "\\", "[", "]", "a", ":"]))
tricky_values = st.recursive(
    st.none() | st.integers(-(2**70), 2**70) | tricky_text,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(tricky_text | st.sampled_from(["key", "value"]), children, max_size=3)
    ),
    max_leaves=12,
)


@given(
    st.lists(tricky_values, max_size=12),
    st.integers(min_value=1, max_value=40),
    st.lists(st.integers(min_value=1, max_value=30), max_size=20),
)
def test_a_body_decoded_in_pieces_is_the_body_decoded_whole(
    items: list[object], piece: int, arrivals: list[int]
) -> None:
    """Cuts land wherever `},{"` appears, inside strings and nested objects too; only the
    cuts between top-level items may be kept, so the result is the whole decode's, however
    the bytes arrive."""
    raw = json.dumps(items, separators=(",", ":")).encode()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(messages, "PIECE_BYTES", piece)
        assert messages.load_messages(raw) == messages.load_json(raw)
        decoder, at = messages.MessageDecoder(), 0
        for size in [*arrivals, len(raw)]:
            decoder.feed(raw[at : at + size])
            at += size
        assert decoder.finish() == messages.load_json(raw)
        assert decoder.head == raw[:4096]


def test_a_long_page_is_decoded_in_pieces_and_parsed_as_whole() -> None:
    """A page of many messages, whose values hold the bytes a cut looks for."""
    rows = [
        {
            "key": f"k{i}",
            "value": {"id": str(i), "tags": '{"},{\\"key\\":",b}'},
            "headers": {"operation": "insert", "relation": ["public", "t"]},
        }
        for i in range(20_000)
    ]
    body = [*rows, {"headers": {"control": "up-to-date", "global_last_seen_lsn": "7"}}]
    raw = orjson.dumps(body)
    assert len(raw) > 4 * messages.PIECE_BYTES
    parsed = parse_body(raw, RowParser(SCHEMA))
    assert [c.value["id"] for c in parsed.changes] == list(range(20_000))
    assert parsed.changes[-1].value["tags"] == ['},{"key":', "b"]
    assert parsed.up_to_date and parsed.lsn == "7"


@pytest.mark.parametrize(
    "tail",
    [b',{"key":"x","value":{"id":"1"}', b',{"key":"x"}]]', b',{"key":12345678901234567890123}]'],
)
def test_a_long_body_broken_after_its_first_pieces(tail: bytes) -> None:
    """A body whose end is malformed, or holds what orjson decodes only with help (a huge
    int), is decoded as a whole would be: the same error, or the same values."""
    good = orjson.dumps(
        [
            {"key": f"k{i}", "value": {"id": str(i)}, "headers": {"operation": "insert"}}
            for i in range(30_000)
        ]
    )
    raw = good[:-1] + tail
    try:
        whole = messages.load_json(raw)
    except MalformedResponseError as exc:
        error = str(exc)
        with pytest.raises(MalformedResponseError) as caught:
            messages.load_messages(raw)
        assert "not valid JSON" in error and "not valid JSON" in str(caught.value)
    else:
        assert messages.load_messages(raw) == whole


# -- shape definitions ----------------------------------------------------------------------


def test_shape_key_is_stable_and_sorted() -> None:
    a = ShapeDefinition("http://h/v1/shape", table="t", where="x=$1", where_params=["1"])
    b = ShapeDefinition("http://h/v1/shape", where="x=$1", table="t", where_params={1: "1"})
    assert a.key == b.key == "http://h/v1/shape?params[1]=1&table=t&where=x=$1"
    assert a.fingerprint == b.fingerprint


@pytest.mark.parametrize(
    "kwargs",
    [
        {"url": "ftp://h/v1/shape"},
        {"url": "http://h/v1/shape?table=t"},
        {"url": "http://h/v1/shape", "table": " "},
        {"url": "http://h/v1/shape", "where": ""},
        {"url": "http://h/v1/shape", "where_params": ["1"]},
        {"url": "http://h/v1/shape", "replica": "partial"},
        {"url": "http://h/v1/shape", "log": "some"},
        {"url": "http://h/v1/shape", "params": {"table": "t"}},
        {"url": "http://h/v1/shape", "params": {"x": [1]}},
        {"url": "http://h/v1/shape", "where": "a=$1", "where_params": "ab"},
    ],
)
def test_bad_shape_definitions_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ShapeDefinitionError):
        ShapeDefinition(**kwargs)  # type: ignore[arg-type]


def test_with_updates_merges_params_and_headers() -> None:
    shape = ShapeDefinition("http://h/v1/shape", table="t", headers={"a": "1"})
    updated = shape.with_updates({"tags": "x"}, {"b": "2"})
    assert updated.query_params() == {"table": "t", "tags": "x"}
    assert updated.headers == {"a": "1", "b": "2"}


def test_redact_url_hides_secret_params() -> None:
    url = "http://h/v1/shape?secret=abc&table=t&api_secret=def"
    assert redact_url(url) == "http://h/v1/shape?secret=***&table=t&api_secret=***"
    assert redact_url("http://h/v1/shape") == "http://h/v1/shape"


# -- back-off -------------------------------------------------------------------------------


def test_full_jitter_delays_stay_under_the_growing_cap() -> None:
    timer = BackoffTimer(Backoff(initial=1, maximum=32), rng=random.Random(7))
    delays = [timer.next_delay() for _ in range(10)]
    caps = [1, 2, 4, 8, 16, 32, 32, 32, 32, 32]
    assert all(0 <= d <= c for d, c in zip(delays, caps, strict=True))
    assert len(set(delays)) == 10  # jittered, not constant
    timer.reset()
    assert timer.next_delay() <= 1


def test_retry_after_is_a_floor_and_retries_can_be_limited() -> None:
    timer = BackoffTimer(Backoff(initial=1, maximum=2, max_retries=2))
    assert timer.next_delay(retry_after=10) == 10
    assert not timer.exhausted
    timer.next_delay()
    assert timer.exhausted


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("5", 5.0),
        ("0", 0.0),
        ("-3", 0.0),
        ("99999", 3600.0),
        ("1.5", 1.5),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_parse_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    now = time.time()
    assert 59 <= parse_retry_after(formatdate(now + 60, usegmt=True), now=now) <= 61  # type: ignore[operator]
    assert parse_retry_after(formatdate(now - 60, usegmt=True), now=now) == 0
