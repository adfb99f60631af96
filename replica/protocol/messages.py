"""Shape-log messages: parsing and validating one response body.

A body is a JSON array of messages. Change messages (they have a `key`) carry rows; control
messages (`headers.control`) mark `up-to-date`, `must-refetch` and `snapshot-end`; anything
else is an event we do not use. Every malformed piece raises `MalformedResponseError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from replica.errors import MalformedResponseError, ValueParseError

OPERATIONS = frozenset({"insert", "update", "delete"})

RowParser = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(slots=True)
class ChangeMessage:
    """One row change. `value` holds parsed column values (partial for default-replica
    updates); `old_value` holds previous values of changed columns under `replica=full`.
    `key` is an opaque identity: never split it, use `value` and the schema's `pk_index`."""

    key: str
    operation: str
    value: dict[str, Any]
    old_value: dict[str, Any] | None = None
    headers: dict[str, Any] = field(default_factory=dict)

    @property
    def lsn(self) -> str | None:
        """Commit LSN of the source transaction (absent on snapshot rows)."""
        lsn = self.headers.get("lsn")
        return None if lsn is None else str(lsn)

    @property
    def last(self) -> bool:
        """True on the final operation of a transaction for this shape."""
        return self.headers.get("last") is True


@dataclass(slots=True)
class ParsedBody:
    """What one response body said."""

    changes: list[ChangeMessage]
    up_to_date: bool = False
    must_refetch: bool = False
    snapshot_end: bool = False
    #: `global_last_seen_lsn` of the up-to-date message, if any.
    lsn: str | None = None
    #: Control and event messages this client does not use (skipped, as the protocol asks).
    ignored: int = 0


def load_json(raw: bytes | str) -> Any:
    """Decode JSON fast, falling back to the stdlib for what orjson refuses (huge ints)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise MalformedResponseError(f"response body is not valid JSON: {exc}") from None


#: A body is decoded in pieces of about this many bytes (see `MessageDecoder`).
PIECE_BYTES = 256 * 1024
#: Where one message ends and the next begins, in a compact body.
_BETWEEN = b'},{"'
#: How much of a body's start a `MessageDecoder` keeps for error messages.
_HEAD_BYTES = 4096


class MessageDecoder:
    """Decodes a body that should be a JSON array of messages as its bytes arrive
    (`feed`), in pieces of about `PIECE_BYTES`; `finish` returns the decoded array.

    The body is not held whole beside its messages (a piece's bytes are let go once it is
    decoded), and orjson's working memory is sized by a piece, not by the page: orjson
    decodes a document into a buffer of about twelve times its size before it makes Python
    objects, so a 10 MB page (Electric's usual) decoded whole briefly needs 120 MB.

    A piece is cut where `},{"` follows the end of a message and is decoded as an array of
    its own. The cut needs no tokenising: bracketed, a piece is valid JSON only if it ends
    at the end of a top-level message (cut inside a string, the string is left open; cut
    inside an object or array, the brackets do not match), so a wrong cut cannot pass
    unnoticed. From a piece that does not decode on, and for a body that is not a compact
    array, the rest is kept and decoded whole at the end, as before (`load_json`, with its
    errors).
    """

    __slots__ = ("_data", "_opened", "_parts", "_size", "_whole", "head")

    def __init__(self) -> None:
        #: The body's first bytes (for error messages: what came instead of messages).
        self.head = b""
        self._data: list[Any] = []
        self._parts: list[bytes] = []  # bytes not decoded yet, from a message's start
        self._size = 0
        self._opened = False  # the array's "[" is behind us
        self._whole = False  # the rest is decoded whole

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the body."""
        if len(self.head) < _HEAD_BYTES:
            self.head += chunk[: _HEAD_BYTES - len(self.head)]
        self._parts.append(chunk)
        self._size += len(chunk)
        if self._whole or self._size < 2 * PIECE_BYTES:
            return
        raw = b"".join(self._parts)
        start = 0
        if not self._opened:
            if raw[:1] != b"[":  # not a compact array: leave it all to `load_json`
                self._parts, self._whole = [raw], True
                return
            self._opened, start = True, 1
        while True:
            cut = raw.find(_BETWEEN, start + PIECE_BYTES)
            if cut < 0:
                break
            try:
                self._data += orjson.loads(b"[" + raw[start : cut + 1] + b"]")
            except orjson.JSONDecodeError:
                self._whole = True  # a cut inside a message, or a malformed body
                break
            start = cut + 2
        rest = raw[start:]
        self._parts, self._size = [rest], len(rest)

    def finish(self) -> Any:
        """The decoded body (`MalformedResponseError` if it is not JSON)."""
        raw = b"".join(self._parts)
        self._parts = []
        if not self._opened:
            return load_json(raw) if raw else []  # an empty body holds no messages
        self._data += load_json(b"[" + raw)  # "[" and the rest: an array if it decodes
        return self._data


def load_messages(raw: bytes | str) -> Any:
    """Decode a whole body that should be a JSON array of messages, in pieces (see
    `MessageDecoder`)."""
    if isinstance(raw, str):
        return load_json(raw) if raw else []
    decoder = MessageDecoder()
    decoder.feed(raw)
    return decoder.finish()


def _check_strings(value: dict[str, Any], where: str) -> None:
    for column, item in value.items():
        if item is not None and type(item) is not str:
            raise MalformedResponseError(
                f"{where}: column {column!r} must be a string or null, got {type(item).__name__}"
            )


def parse_body(raw: bytes | str, row_parser: RowParser | None = None) -> ParsedBody:
    """Parse a response body into change messages and control flags.

    `row_parser` converts each `value`/`old_value` in place (see `values.RowParser`); without
    one, values are only checked to be strings or nulls.
    """
    return parse_messages(load_messages(raw), row_parser)


def parse_messages(data: Any, row_parser: RowParser | None = None) -> ParsedBody:
    """`parse_body` of a body already decoded (by `load_messages` or a `MessageDecoder`)."""
    if not isinstance(data, list):
        raise MalformedResponseError(
            f"response body must be a JSON array of messages, got {type(data).__name__}"
        )
    out = ParsedBody(changes=[])
    changes = out.changes
    for index, message in enumerate(data):
        if type(message) is not dict:
            raise MalformedResponseError(f"message {index} is not a JSON object")
        headers = message.get("headers")
        if type(headers) is not dict:
            raise MalformedResponseError(f"message {index} has no headers object")
        key = message.get("key")
        if key is not None:
            changes.append(_change(index, message, key, headers, row_parser))
            continue
        control = headers.get("control")
        if control is None:
            out.ignored += 1  # an event message (subquery move-in/out): not used here
        elif control == "up-to-date":
            out.up_to_date = True
            lsn = headers.get("global_last_seen_lsn")
            if lsn is not None:
                if type(lsn) not in (str, int):
                    raise MalformedResponseError(
                        f"message {index}: global_last_seen_lsn must be a string"
                    )
                out.lsn = str(lsn)
        elif control == "must-refetch":
            out.must_refetch = True
        elif control == "snapshot-end":
            out.snapshot_end = True
        elif type(control) is str:
            out.ignored += 1  # a control message from a newer server: skip it
        else:
            raise MalformedResponseError(f"message {index}: control must be a string")
    return out


def _change(
    index: int,
    message: dict[str, Any],
    key: Any,
    headers: dict[str, Any],
    row_parser: RowParser | None,
) -> ChangeMessage:
    if type(key) is not str:
        raise MalformedResponseError(f"message {index}: key must be a string")
    operation = headers.get("operation")
    if type(operation) is not str or operation not in OPERATIONS:
        raise MalformedResponseError(
            f"message {index} (key {key[:80]!r}): unknown operation {operation!r}"
        )
    value = message.get("value")
    if value is None and operation == "delete":
        value = {}
    if type(value) is not dict:
        raise MalformedResponseError(f"message {index} (key {key[:80]!r}): value must be an object")
    old_value = message.get("old_value")
    if old_value is not None and type(old_value) is not dict:
        raise MalformedResponseError(
            f"message {index} (key {key[:80]!r}): old_value must be an object"
        )
    if row_parser is None:
        _check_strings(value, f"message {index}")
        if old_value is not None:
            _check_strings(old_value, f"message {index}")
    else:
        try:
            row_parser(value)
            if old_value is not None:
                row_parser(old_value)
        except ValueParseError as exc:
            exc.message = f"message {index} (key {key[:80]!r}): {exc.message}"
            raise
    return ChangeMessage(key, operation, value, old_value, headers)
