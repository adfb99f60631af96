"""The timestamps replica writes: UTC, ISO-8601 with milliseconds, `YYYY-MM-DDTHH:MM:SS.sssZ`
(the format of the `runs` table's time columns and of replica's own bookkeeping)."""

from __future__ import annotations

import datetime as dt
import time


def iso(t: float) -> str:
    """Unix time `t` as `YYYY-MM-DDTHH:MM:SS.sssZ`."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def now_iso() -> str:
    """The current UTC time as `YYYY-MM-DDTHH:MM:SS.sssZ`."""
    return iso(time.time())


def unix_time(text: str) -> float:
    """The Unix time of a `YYYY-MM-DDTHH:MM:SS.sssZ` timestamp."""
    parsed = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return parsed.replace(tzinfo=dt.timezone.utc).timestamp()
