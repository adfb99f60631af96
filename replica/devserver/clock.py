"""The emulator's wall clock: the machine's, plus an offset that only moves forward.

Run timestamps, the tag feeds' `createdAt` windows and the ages of remembered handle windows
and working sets all read it, so a test can reach "a day later" or "two weeks later" by
advancing it instead of sleeping. Token expiry, presigned URLs and long-poll holds keep the
machine's time.
"""

from __future__ import annotations

import datetime as dt
import time

_EPOCH = dt.datetime(1970, 1, 1)


class Clock:
    """`time()`/`now()`/`millis()` of the emulator; `advance(seconds)` moves it forward."""

    def __init__(self) -> None:
        self._offset = 0.0

    @property
    def offset(self) -> float:
        """Seconds the emulator's clock runs ahead of the machine's."""
        return self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(
                f"cannot move the clock back ({seconds} s): it only moves forward, "
                "so that run timestamps keep increasing; start a new emulator instead"
            )
        self._offset += seconds

    def time(self) -> float:
        """Seconds since the epoch."""
        return time.time() + self._offset

    def millis(self) -> int:
        """Milliseconds since the epoch (JavaScript's `Date.now()`)."""
        return int(self.time() * 1000)

    def now(self) -> dt.datetime:
        """Naive UTC, like the emulator's timestamps."""
        return _EPOCH + dt.timedelta(seconds=self.time())
