"""`within`: a deadline that never swallows the caller's cancellation."""

from __future__ import annotations

import asyncio

import pytest

from replica.protocol.deadline import within


async def _cancelled_as_it_finishes(wait: object) -> asyncio.Task[int]:
    loop = asyncio.get_running_loop()
    inner: asyncio.Future[int] = loop.create_future()
    task = asyncio.ensure_future(wait(inner, 10))  # type: ignore[operator]
    await asyncio.sleep(0)  # the task is now waiting on `inner`
    inner.set_result(1)
    task.cancel()  # in the same loop iteration as the result
    await asyncio.wait({task})
    return task


def test_a_cancel_that_races_the_result_is_not_lost() -> None:
    task = asyncio.run(_cancelled_as_it_finishes(within))
    assert task.cancelled()


def test_the_result_when_in_time() -> None:
    async def main() -> int:
        async def soon() -> int:
            await asyncio.sleep(0.01)
            return 7

        return await within(soon(), 5)

    assert asyncio.run(main()) == 7


def test_a_timeout_cancels_what_it_waited_for() -> None:
    async def main() -> asyncio.Future[None]:
        slow: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with pytest.raises(asyncio.TimeoutError):
            await within(slow, 0.01)
        return slow

    assert asyncio.run(main()).cancelled()


def test_an_error_inside_propagates() -> None:
    async def main() -> None:
        async def broken() -> None:
            raise ValueError("boom")

        await within(broken(), 5)

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(main())
