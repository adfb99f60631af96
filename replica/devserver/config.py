"""Settings of one emulator instance, with the defaults of real Electric and Trigger.dev."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Literal

MIB = 1024 * 1024
DAY = 24 * 3600.0

#: How the realtime routes behave: like Trigger.dev's proxy to Electric, or like its own
#: ("native") implementation of the same protocol (trigger-realtime.md §1.1, §1.8).
RealtimeBackend = Literal["electric", "native"]
REALTIME_BACKENDS: tuple[RealtimeBackend, ...] = ("electric", "native")


def make_secret_key() -> str:
    """A fresh development secret key in Trigger.dev's format (`tr_dev_` + 20 characters)."""
    return "tr_dev_" + secrets.token_urlsafe(15)


@dataclass
class DevServerConfig:
    """Everything `replica dev-server` can be told; every field has a usable default."""

    host: str = "127.0.0.1"
    #: 0 picks a free port (what tests want); the CLI defaults to 3030, Trigger.dev's port.
    port: int = 0
    #: Secret API key accepted as `Authorization: Bearer ...` and used to sign/verify JWTs.
    secret_key: str = field(default_factory=make_secret_key)
    #: SQLite file holding the emulated tables; None = a temporary file removed at stop.
    db_path: str | None = None
    #: How long a live request is held before answering `[up-to-date]` (Electric: 20 s; the
    #: native backend holds this ± `native_live_poll_jitter`).
    long_poll_timeout: float = 20.0
    #: Snapshot chunk size threshold in bytes (Electric's default is ~10 MB) ...
    chunk_bytes: int = 10 * MIB
    #: ... and optionally in rows (handy in tests to get several chunks from a few rows).
    chunk_rows: int | None = None
    #: Size threshold of one response when catching up on a shape log.
    log_chunk_bytes: int = 10 * MIB
    #: Concurrent live requests allowed on the Trigger.dev realtime routes (then 429).
    live_concurrency_limit: int = 100_000
    #: Cap on the `createdAt` window of tag feeds, in seconds (Trigger.dev default: 24 h).
    created_at_max_age: float = DAY
    #: The tag feeds' `createdAt` floor is rounded down to this many seconds, so that
    #: subscriptions started close together share one shape (and its snapshot).
    created_at_bucket: float = 60.0
    #: Which realtime backend the Trigger.dev routes behave like (webapp default: electric).
    realtime_backend: RealtimeBackend = "electric"
    #: Electric backend: seconds a tag feed's handle keeps its `createdAt` window after the
    #: last response that used it (webapp cache: fresh 1 week, served stale up to 2 weeks).
    handle_window_ttl: float = 14 * DAY
    #: Native backend: most runs a tag or batch feed holds (..._NATIVE_MAX_LIST_RESULTS).
    native_max_list_results: int = 1000
    #: Native backend: live polls hold `long_poll_timeout` ± this ratio (..._JITTER_RATIO).
    native_live_poll_jitter: float = 0.15
    #: Native backend: seconds a handle's working set lasts after its last poll
    #: (..._NATIVE_WORKING_SET_TTL_MS); then the next poll diffs against its offset only.
    native_working_set_ttl: float = 300.0
    #: Payloads above this many bytes are offloaded to the object store (Trigger.dev: 512 KB).
    payload_offload_threshold: int = 512 * 1024
    #: Seconds the packet download routes (presign, object GET) wait before answering, like
    #: an object store across the internet (benchmarks use 0.02); 0 answers at once.
    packet_latency: float = 0.0
    #: When set, `/v1/shape` requires `?secret=` (Electric's ELECTRIC_SECRET mode).
    electric_secret: str | None = None
    #: Run the simulator: tagged runs triggered and walked through realistic lives.
    simulate: bool = False
    #: Seed of the simulator (same seed, same runs).
    seed: int = 0
    #: Time compression of simulated lives (2.0 = twice as fast).
    speed: float = 1.0
    #: Seconds between simulated triggers (before `speed`).
    simulate_interval: float = 3.0
    #: Simulated runs to trigger at most (None = forever).
    simulate_runs: int | None = None
    #: Rotate every shape's handle this often, in seconds (None = never).
    rotate_every: float | None = None
