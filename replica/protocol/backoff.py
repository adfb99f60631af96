"""Retry timing: full-jitter exponential back-off with `Retry-After` as a floor."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

#: `Retry-After` values are clamped to this many seconds.
MAX_RETRY_AFTER = 3600.0


@dataclass(frozen=True)
class Backoff:
    """How long to wait between retries of a failed request.

    Each wait is `max(retry_after, uniform(0, delay))` with `delay` starting at `initial`
    seconds and multiplied by `multiplier` after each retry up to `maximum` ("full jitter").
    `max_retries=None` retries forever (the right default for a long-running sync).
    """

    initial: float = 1.0
    maximum: float = 32.0
    multiplier: float = 2.0
    max_retries: int | None = None


_JITTER = random.Random()


class BackoffTimer:
    """The running state of one `Backoff` policy: call `next_delay()` per failure."""

    def __init__(self, policy: Backoff, rng: random.Random | None = None) -> None:
        self.policy = policy
        # The module's generator by default: seeding one costs more than the request that
        # usually succeeds at once (a timer is made per request).
        self.rng = rng or _JITTER
        self.attempts = 0
        self._delay = policy.initial

    def next_delay(self, retry_after: float | None = None) -> float:
        """The wait before the next attempt; `retry_after` (seconds) is a floor."""
        self.attempts += 1
        wait = self.rng.uniform(0, min(self._delay, self.policy.maximum))
        self._delay = min(self._delay * self.policy.multiplier, self.policy.maximum)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait

    @property
    def exhausted(self) -> bool:
        """True once `max_retries` failures have been counted."""
        limit = self.policy.max_retries
        return limit is not None and self.attempts >= limit

    def reset(self) -> None:
        """Forget past failures after a success."""
        self.attempts = 0
        self._delay = self.policy.initial


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date), or None.

    Clamped to [0, 1 h]; an unparsable value is ignored rather than trusted.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
