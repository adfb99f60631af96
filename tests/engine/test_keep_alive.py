"""Quiet shapes cost no transactions: empty live replies that move nothing are not written."""

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


def test_an_empty_live_reply_at_the_written_position_is_skipped() -> None:
    written = ("h1", "5_0", time.monotonic())
    assert engine._keep_alive(_page(), written)


@pytest.mark.parametrize(
    "page",
    [
        _page("6_0"),  # the offset moved
        _page(changes=[RowChange("delete", "k")]),  # changes
        _page(reset=True),
        _page(live=False),  # the initial sync's up-to-date is always written
        _page(up_to_date=False),
    ],
)
def test_anything_else_is_written(page: Batch) -> None:
    assert not engine._keep_alive(page, ("h1", "5_0", time.monotonic()))


def test_a_quiet_position_is_still_refreshed_now_and_then() -> None:
    stale = ("h1", "5_0", time.monotonic() - engine.KEEP_ALIVE_REFRESH - 1)
    assert not engine._keep_alive(_page(), stale)
