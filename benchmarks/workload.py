"""The data every benchmark shares: realistic runs in the local emulator, and a plain download.

`Upstream` starts a `DevServer`, bulk-loads N runs with the tag `bench` (about 1.2 KB each
on the wire: a JSON payload, metadata, two tags, timestamps) and warms the tag feed's
snapshot, so every contender then reads the same pre-rendered responses. `download()` fetches
all of them with a bare httpx loop: the rate the server can serve, beside which the sync
rates are read (the server is not the bottleneck when it is much faster).
"""

from __future__ import annotations

import logging
import random
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from replica.devserver import DevServer
from replica.sources.trigger import ELECTRIC_VERSION

log = logging.getLogger(__name__)

TAG = "bench"
TASKS = ("send-email", "generate-report", "import-csv", "render-video", "sync-crm")


def run_items(count: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """`{task, payload, options}` items for `DevServer.trigger_many`: ~1.2 KB runs."""
    rng = random.Random(seed)
    words = ["".join(rng.choices(string.ascii_lowercase, k=8)) for _ in range(200)]
    for i in range(count):
        yield {
            "task": rng.choice(TASKS),
            "payload": {
                "accountId": f"acct_{i}",
                "items": [rng.randrange(1000) for _ in range(40)],
                "note": " ".join(rng.choices(words, k=40)),
            },
            "options": {
                "tags": [TAG, f"user:{i % 500}"],
                "metadata": {"progress": round(rng.random(), 2), "stage": rng.choice(words)},
            },
        }


@dataclass
class Download:
    """One plain download of a feed's initial sync."""

    seconds: float
    bytes: int
    responses: int

    def rate(self, rows: int) -> float:
        return rows / self.seconds if self.seconds else 0.0


class Upstream:
    """A running emulator holding `rows` runs tagged `bench` (use as a context manager)."""

    def __init__(self, rows: int, *, long_poll_timeout: float = 20.0, **config: Any) -> None:
        self.rows = rows
        # A day-wide createdAt bucket: every request of the benchmark maps to one shape, so
        # its snapshot is rendered once and then served warm to every contender.
        config.setdefault("created_at_bucket", 86_400.0)
        self.server = DevServer(long_poll_timeout=long_poll_timeout, **config)
        self.load_seconds = 0.0

    def __enter__(self) -> Upstream:
        self.server.start()
        if self.rows:
            started = time.perf_counter()
            self.load()
            self.load_seconds = time.perf_counter() - started
            log.info("loaded %d runs in %.1f s", self.rows, self.load_seconds)
        return self

    def load(self) -> None:
        """Put the workload's runs into the emulator (pending runs, packets inline)."""
        self.server.trigger_many(run_items(self.rows), per_transaction=10_000)

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def token(self) -> str:
        return self.server.secret_key

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "x-trigger-electric-version": ELECTRIC_VERSION,
        }

    def pages(self, tag: str = TAG) -> Iterator[httpx.Response]:
        """Every response of the feed's initial sync, in order (offset -1 to up-to-date)."""
        offset, handle = "-1", None
        with httpx.Client(timeout=600, headers=self.headers()) as client:
            while True:
                params = {"tags": tag, "offset": offset}
                if handle:
                    params["handle"] = handle
                response = client.get(f"{self.url}/realtime/v1/runs", params=params)
                response.raise_for_status()
                yield response
                offset = response.headers["electric-offset"]
                handle = response.headers["electric-handle"]
                if "electric-up-to-date" in response.headers:
                    return

    def download(self, tag: str = TAG) -> Download:
        """Fetch the whole initial sync once, keeping nothing but the byte count."""
        started = time.perf_counter()
        size = responses = 0
        for response in self.pages(tag):
            size += len(response.content)
            responses += 1
        return Download(time.perf_counter() - started, size, responses)
