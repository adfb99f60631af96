"""Quiet shapes cost no transactions: empty live replies are not written, even when their
offset moved (the native backend's empty polls), until a real change or a refresh is due."""

from __future__ import annotations

import time

import pytest

from replica import engine
from replica.protocol import Position
from replica.protocol.stream import Batch
from replica.tables import RowChange


def _page(offset: str = "5_0", *, changes: list[RowChange] | None = None, **flags: bool) -> Batch:
    options = {"up_to_date": True, "live": True, "reset": False, **flags}
    position = Position(handle="h1", offset=offset, cursor="c2")
    return Batch(changes or [], position, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("offset", ["5_0", "6_0"])
def test_an_empty_live_reply_on_the_written_handle_is_skipped(offset: str) -> None:
    written = ("h1", "5_0", time.monotonic())
    assert engine._keep_alive(_page(offset), written)


@pytest.mark.parametrize(
    "page",
    [
        _page(changes=[RowChange("delete", "k")]),  # changes
        _page(reset=True),
        _page(live=False),  # the initial sync's up-to-date is always written
        _page(up_to_date=False),
    ],
)
def test_anything_else_is_written(page: Batch) -> None:
    assert not engine._keep_alive(page, ("h1", "5_0", time.monotonic()))


def test_a_new_handle_is_written() -> None:
    assert not engine._keep_alive(_page(), ("h0", "5_0", time.monotonic()))


def test_a_quiet_position_is_still_refreshed_now_and_then() -> None:
    stale = ("h1", "5_0", time.monotonic() - engine.KEEP_ALIVE_REFRESH - 1)
    assert not engine._keep_alive(_page(), stale)
