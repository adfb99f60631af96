"""One logical shape request: timeouts, the live watchdog, and retries.

Network errors, timeouts of non-live requests, 429 and 5xx are retried with back-off (a
`Retry-After` as floor) until a reply with a usable status comes; a live long-poll held too
long is re-issued at once; a certificate that cannot be verified fails at once, since
retrying cannot fix it. Any other status is a typed `UpstreamError`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import httpx

from replica.errors import CertificateError, RetriesExhaustedError
from replica.protocol.backoff import BackoffTimer, parse_retry_after
from replica.protocol.client import HttpClient
from replica.protocol.messages import MessageDecoder
from replica.protocol.replies import (
    Reply,
    Retryable,
    brief,
    certificate_problem,
    upstream_error,
    without_secrets,
)
from replica.protocol.shape import ShapeDefinition, redact_url

if TYPE_CHECKING:
    from replica.protocol.stream import StreamOptions

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
#: Reports what happens (kind, message, details) to the stream's watchers.
Emit = Callable[..., None]


class ReplyFetcher:
    """Gets the replies of one shape stream's requests, retrying what can be retried."""

    def __init__(
        self, client: HttpClient, options: StreamOptions, *, emit: Emit, sleep: Sleep
    ) -> None:
        self.client = client
        self.options = options
        self._emit = emit
        self._sleep = sleep

    async def get(self, shape: ShapeDefinition, url: str, live: bool) -> Reply:
        """The reply to `GET url` (a 2xx or a 409), retried with back-off until it comes."""
        timer = BackoffTimer(self.options.backoff)
        shown = redact_url(url)
        while True:
            try:
                reply = await self._attempt(shape, url, shown, live)
            except Retryable as exc:
                if timer.exhausted:
                    raise RetriesExhaustedError(
                        f"gave up after {timer.attempts} retries of {shown}: {exc}", url=shown
                    ) from exc
                delay = timer.next_delay(exc.retry_after)
                self._emit(
                    "retry",
                    f"{exc}; retrying in {delay:.1f} s",
                    status=exc.status,
                    delay=delay,
                    url=shown,
                )
                await self._sleep(delay)
                continue
            except asyncio.TimeoutError:
                # The live watchdog fired: the server (or a proxy) held the request too long.
                # Nothing was received, so the same request is simply made again.
                self._emit("live-timeout", "live request timed out; re-issuing it", url=shown)
                continue
            status = reply.status
            if 200 <= status < 300 or status == 409:
                return reply
            reply.body = without_secrets(reply.body, shape)
            raise upstream_error(reply, shown)

    async def _attempt(self, shape: ShapeDefinition, url: str, shown: str, live: bool) -> Reply:
        """One try: a reply, or `Retryable`, `asyncio.TimeoutError` (the live watchdog) or
        `CertificateError`. `shown` is the URL without its secrets."""
        opts = self.options
        debug = log.isEnabledFor(logging.DEBUG)
        if debug:
            log.debug("GET %s", shown)
            started = time.monotonic()
        limit = opts.live_timeout if live else opts.request_timeout
        try:
            # A page (up to ~10 MB) is decoded as it arrives, never held whole.
            decoder = MessageDecoder()
            response = await self.client.get(
                url, shape.headers, timeout=limit, follow_redirects=True, sink=decoder.feed
            )
        except httpx.TimeoutException as exc:
            if live:
                raise asyncio.TimeoutError from None  # the watchdog's case: re-issue
            if isinstance(exc, httpx.ReadTimeout):
                raise Retryable(f"request took longer than {limit:.0f} s") from None
            raise Retryable(f"network error: {type(exc).__name__}: {exc}") from exc
        except httpx.TransportError as exc:
            problem = certificate_problem(exc)
            if problem is not None:
                # Retrying cannot make a certificate valid: say so at once.
                raise CertificateError(
                    f"the TLS certificate of {httpx.URL(url).host} could not be verified: "
                    f"{problem}",
                    url=shown,
                ) from exc
            raise Retryable(f"network error: {type(exc).__name__}: {exc}") from exc
        reply = Reply(response.status, response.headers, response.body, shown, decoder)
        if debug:
            log.debug(
                "%s %s in %.3f s: offset=%s handle=%s",
                reply.status,
                shown,
                time.monotonic() - started,
                reply.headers.get("electric-offset"),
                reply.headers.get("electric-handle"),
            )
        status = reply.status
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(reply.headers.get("retry-after"))
            detail = brief(without_secrets(reply.body, shape))
            raise Retryable(f"HTTP {status}{' ' + detail if detail else ''}", status, retry_after)
        return reply


__all__ = ["ReplyFetcher"]
