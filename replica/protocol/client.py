"""The HTTP client the layers above ask for replies: an `HttpClient`.

Two kinds do the work. `Http1Client` (lean, ours) serves long-polls and packet downloads for
a fraction of httpx's CPU. `HttpxClient` wraps an `httpx.AsyncClient` where httpx is needed:
a proxy from the environment, a client the caller passes in (its TLS settings, proxies,
auth), or a scripted `httpx.MockTransport` in protocol unit tests.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections.abc import Callable, Mapping
from typing import Protocol

import httpx

from replica.protocol.deadline import within
from replica.protocol.http1 import CONNECT_TIMEOUT, Headers, Http1Client, Response


class HttpClient(Protocol):
    """What replica needs of an HTTP client: whole GET replies."""

    async def get(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
        follow_redirects: bool = False,
        sink: Callable[[bytes], None] | None = None,
    ) -> Response:
        """The reply to `GET url`; `httpx.TimeoutException` once `timeout` seconds pass
        without the whole reply, another `httpx.TransportError` when the network fails.
        With `sink`, a 200 reply's body goes to it (in pieces, as it arrives, where the
        client can) and `Response.body` is empty."""
        ...

    async def aclose(self) -> None:
        """Let go of the connections (of the client, if the `HttpClient` owns it)."""
        ...


class HttpxClient:
    """An `HttpClient` over an `httpx.AsyncClient` (closed by `aclose` only when `owned`).

    Headers given to `get` replace the client's defaults of the same name; an
    `Authorization` header among the client's defaults is sent only with requests that
    give headers of their own, so a packet download (given none) never carries the token.
    """

    def __init__(self, client: httpx.AsyncClient, *, owned: bool = False) -> None:
        self.client = client
        self._owned = owned

    async def get(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
        follow_redirects: bool = False,
        sink: Callable[[bytes], None] | None = None,
    ) -> Response:
        limits = httpx.Timeout(
            connect=CONNECT_TIMEOUT,
            read=None if timeout is None else timeout + 1.0,
            write=CONNECT_TIMEOUT,
            pool=None,
        )
        request = self.client.build_request("GET", url, headers=headers, timeout=limits)
        if headers is None:
            request.headers.pop("authorization", None)
        try:
            return await within(self._send(request, follow_redirects, sink), timeout)
        except asyncio.TimeoutError:
            raise httpx.ReadTimeout(f"no whole reply within {timeout} s") from None

    async def _send(
        self,
        request: httpx.Request,
        follow_redirects: bool,
        sink: Callable[[bytes], None] | None,
    ) -> Response:
        response = await self.client.send(request, stream=True, follow_redirects=follow_redirects)
        try:
            if sink is not None and response.status_code == 200:
                async for chunk in response.aiter_bytes():
                    sink(chunk)
                body = b""
            else:
                body = await response.aread()
        finally:
            await response.aclose()
        headers: Headers = dict(response.headers.items())
        return Response(response.status_code, headers, body, str(response.url))

    async def aclose(self) -> None:
        if self._owned:
            await self.client.aclose()


def as_http_client(client: httpx.AsyncClient | HttpClient) -> HttpClient:
    """`client` as an `HttpClient` (an httpx client is wrapped, not owned)."""
    return HttpxClient(client) if isinstance(client, httpx.AsyncClient) else client


def open_client(
    verify: ssl.SSLContext | None = None, *, keepalive_expiry: float = 4.0
) -> HttpClient:
    """The client replica uses when the caller gives none: the lean one, or httpx (owned)
    when the environment names a proxy (`HTTPS_PROXY`, `ALL_PROXY`, ...), which httpx
    honours with its `NO_PROXY` rules. `verify` is the TLS context (default: the system's
    certificate authorities, made when first needed)."""
    if urllib.request.getproxies():
        return HttpxClient(httpx.AsyncClient(verify=verify or True), owned=True)
    return Http1Client(verify=verify, keepalive_expiry=keepalive_expiry)


__all__ = ["HttpClient", "HttpxClient", "Response", "as_http_client", "open_client"]
