"""The shape-stream state machine, free of I/O (see SPEC.md next to this file).

`ShapeState` decides what the next request asks for and how each response moves the
position; `ShapeStream` does the HTTP. Keeping the rules here lets tests drive every
transition directly.
"""

from __future__ import annotations

import enum
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from replica.errors import InvalidPositionError

_OFFSET = re.compile(r"-1|now|[0-9]+_(?:[0-9]+|inf)")


def is_valid_offset(offset: object) -> bool:
    """True for offsets the protocol can send: `-1`, `now`, `<tx>_<op>` or `<tx>_inf`."""
    return isinstance(offset, str) and _OFFSET.fullmatch(offset) is not None


@dataclass(frozen=True)
class Position:
    """Where a shape stream stands: persist it with the data it covers, resume from it.

    `offset` and `handle` are opaque strings from the server. `cursor` only helps caches;
    `schema` is the parsed `electric-schema`; `expired_handle` remembers the last handle a
    409 retired, so cached replays of it are recognised after a restart too.
    """

    handle: str | None = None
    offset: str = "-1"
    cursor: str | None = None
    schema: Mapping[str, Mapping[str, Any]] | None = None
    expired_handle: str | None = None

    def check(self) -> None:
        """Raise `InvalidPositionError` if this position cannot be resumed from."""
        if not is_valid_offset(self.offset):
            raise InvalidPositionError(f"stored offset {self.offset!r} is not a valid offset")
        if self.offset not in ("-1", "now") and not self.handle:
            raise InvalidPositionError(f"stored offset {self.offset!r} has no shape handle")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (see `from_dict`)."""
        return {
            "handle": self.handle,
            "offset": self.offset,
            "cursor": self.cursor,
            "schema": dict(self.schema) if self.schema is not None else None,
            "expired_handle": self.expired_handle,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Position:
        """Rebuild a position saved with `to_dict`."""
        return cls(
            handle=data.get("handle"),
            offset=data.get("offset", "-1"),
            cursor=data.get("cursor"),
            schema=data.get("schema"),
            expired_handle=data.get("expired_handle"),
        )


class Mode(enum.Enum):
    """What kind of request comes next."""

    INITIAL = "initial"  # nothing accepted since (re)start: non-live
    CATCHING_UP = "catching-up"  # more of the log is waiting: non-live
    LIVE = "live"  # the last response ended up to date: long-poll


@dataclass
class ShapeState:
    """Mutable protocol state of one shape stream."""

    handle: str | None = None
    offset: str = "-1"
    cursor: str | None = None
    schema: Mapping[str, Mapping[str, Any]] | None = None
    expired_handle: str | None = None
    mode: Mode = Mode.INITIAL
    #: Random value added to the URL after a 409 or a stale reply so no cache can answer.
    cache_buster: str | None = None
    #: True once the schema header of this (re)start was adopted (first write wins).
    schema_adopted: bool = False
    stale_replies: int = 0
    self_healed: bool = False
    resets: int = field(default=0)

    @classmethod
    def resume(cls, position: Position) -> ShapeState:
        """State that continues from `position` (call `Position.check` first)."""
        return cls(
            handle=position.handle,
            offset=position.offset,
            cursor=position.cursor,
            schema=position.schema,
            expired_handle=position.expired_handle,
        )

    @property
    def position(self) -> Position:
        """The position to persist with the data accepted so far."""
        return Position(self.handle, self.offset, self.cursor, self.schema, self.expired_handle)

    @property
    def live(self) -> bool:
        """Whether the next request is a live long-poll."""
        return self.mode is Mode.LIVE

    def request_params(self) -> dict[str, str]:
        """The protocol's query parameters for the next request."""
        params = {"offset": self.offset}
        if self.handle:
            # Ignored by the server at offset -1, where it works as one more cache buster.
            params["handle"] = self.handle
        if self.mode is Mode.LIVE:
            params["live"] = "true"
            params["cursor"] = self.cursor or ""
        if self.cache_buster:
            params["cache-buster"] = self.cache_buster
        if self.expired_handle:
            # On every request while it is known, as the official client sends it: requests
            # for one position then have the same URL whoever makes them (shared caches).
            params["expired_handle"] = self.expired_handle
        return params

    def is_stale(self, response_handle: str | None) -> bool:
        """A 2xx carrying the handle a 409 retired can only be a cached replay."""
        return self.expired_handle is not None and response_handle == self.expired_handle

    def note_stale(self, max_retries: int) -> bool:
        """Record a stale reply; return False once retries and the one self-heal are spent."""
        self.stale_replies += 1
        self.cache_buster = new_cache_buster()
        if self.stale_replies <= max_retries:
            return True
        if self.self_healed:
            return False
        # Self-heal once: forget the expired handle in case it is our own bookkeeping that
        # is wrong; if the handle really is dead the server will answer 409 again.
        self.self_healed = True
        self.stale_replies = 0
        self.expired_handle = None
        return True

    def accept(
        self,
        *,
        requested_offset: str,
        handle: str | None,
        offset: str | None,
        cursor: str | None,
        schema: Mapping[str, Mapping[str, Any]] | None,
        up_to_date: bool,
    ) -> None:
        """Move past a successful response whose body has been parsed."""
        if handle:
            self.handle = handle
        if offset:
            self.offset = offset
        if cursor is not None:
            self.cursor = cursor
        if schema is not None and not self.schema_adopted:
            self.schema = schema
            self.schema_adopted = True
        self.cache_buster = None
        self.stale_replies = 0
        # Any up-to-date completes the sync, that of an offset=-1 reply included: Electric
        # never sends one there, but Trigger.dev's native backend ends its snapshot with one
        # (and answers one more non-live request with the whole snapshot again).
        if up_to_date and self.handle:
            self.mode = Mode.LIVE
        else:
            self.mode = Mode.CATCHING_UP

    def reset(
        self, new_handle: str | None, *, expire: bool = True, retired: str | None = None
    ) -> None:
        """Start the shape over from offset -1 (409, must-refetch, out-of-bounds offset).

        With `expire`, the handle being retired (`retired`, else the current one) is
        remembered so cached replays of it are recognised; without, the current handle is
        kept unless a new one is given.
        """
        retired = retired or self.handle
        if expire and retired and retired != new_handle:
            self.expired_handle = retired
        if expire or new_handle is not None:
            self.handle = new_handle
        # else: the handle is not known to be dead; keep it (at offset -1 the server ignores
        # it) so that a later 409 can still retire it.
        self.offset = "-1"
        self.cursor = None
        self.schema = None
        self.schema_adopted = False
        self.mode = Mode.INITIAL
        self.cache_buster = new_cache_buster()
        # A 409 comes from the origin, so caches are not (only) in the way: count afresh.
        self.stale_replies = 0
        self.resets += 1


def new_cache_buster() -> str:
    """A fresh random value for the `cache-buster` query parameter."""
    return secrets.token_hex(8)
