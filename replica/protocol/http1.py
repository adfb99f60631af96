"""A lean HTTP/1.1 client for replica's hot paths: long-polls and offloaded packets.

httpx costs about 0.6 ms of CPU per request (its client layer alone 0.16 ms, the rest in
httpcore, h11 and anyio); a replica of 1,000 quiet shapes makes 50 long-polls a second, and
an initial sync with offloaded packets thousands of packet requests. This client does one
thing, `GET`, over pooled keep-alive connections on asyncio streams, for about 0.04 ms.

It speaks what those requests need: TLS (with the caller's `ssl.SSLContext`), keep-alive,
`Content-Length`, chunked and read-to-close bodies, gzip and deflate, redirects. Failures are
raised as httpx's exceptions (`ConnectError`, `ReadTimeout`, `RemoteProtocolError`, ...) so
callers handle both clients alike. Proxies are httpx's job: see `replica.protocol.client`.
"""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

import httpx

from replica.protocol.deadline import within

#: Response headers, names in lower case (repeated ones joined with ", ").
Headers = dict[str, str]
Origin = tuple[str, str, int]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NOT_IN_TARGET = re.compile(r"[^\x21-\x7e]")
_BAD_HEADER = re.compile(r"[\r\n\0]")
#: Seconds allowed to open a connection (a reply has its own bound, per request).
CONNECT_TIMEOUT = 10.0
#: Bytes asked of the socket per receive.
_RECEIVE_SIZE = 64 * 1024
#: Longest status line plus headers accepted.
_HEAD_LIMIT = 1 << 20


@dataclass(slots=True)
class Response:
    """A whole response: status, headers (lower-case names), decoded body, final URL."""

    status: int
    headers: Headers
    body: bytes
    url: str

    @property
    def text(self) -> str:
        """The body as text, in the charset the content type names (UTF-8 by default)."""
        charset = "utf-8"
        for part in self.headers.get("content-type", "").split(";")[1:]:
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset" and value:
                charset = value.strip('"')
        try:
            return self.body.decode(charset, "replace")
        except LookupError:
            return self.body.decode("utf-8", "replace")


@dataclass(slots=True)
class _Target:
    origin: Origin
    host_header: bytes
    path: str  # the request target: path and query, percent-encoded

    @classmethod
    def of(cls, url: str) -> _Target:
        base, mark, query = url.partition("?")
        origin, host_header, path = _split_base(base)
        if mark:
            path = f"{path}?{query.partition('#')[0]}"
        if _NOT_IN_TARGET.search(path):
            path = quote(path, safe="!#$%&'()*+,/:;=?@[]~")
        return cls(origin, host_header, path)


@functools.lru_cache(maxsize=256)
def _split_base(base: str) -> tuple[Origin, bytes, str]:
    """A URL without its query as (origin, Host header, path): a shape asks the same base
    URL every time, so the parsing is done once."""
    parts = urlsplit(base)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise httpx.UnsupportedProtocol(f"cannot GET {base!r}: only http and https URLs")
    host = parts.hostname
    if not host:
        raise httpx.UnsupportedProtocol(f"cannot GET {base!r}: the URL names no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise httpx.UnsupportedProtocol(f"cannot GET {base!r}: {exc}") from None
    default = 443 if scheme == "https" else 80
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port in (None, default) else f"{shown}:{port}"
    return (scheme, host, port or default), host_header.encode("idna"), (parts.path or "/")


class _Connection:
    __slots__ = ("expired", "idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0
        #: The request in flight ran out of time (the connection was aborted).
        self.expired = False

    def expire(self) -> None:
        self.expired = True
        self.writer.transport.abort()

    def usable(self, now: float, expiry: float) -> bool:
        return (
            now - self.idle_since < expiry
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        self.writer.close()


class _Stale(Exception):
    """A reused connection was closed by the server before any of the reply came."""


class Http1Client:
    """`GET` over HTTP/1.1 with a pool of keep-alive connections per origin.

    A request takes the connection of its origin that was given back last (so the busiest
    stay warm and the rest expire after `keepalive_expiry` seconds idle), or opens one;
    each costs O(1) however many are open. A reused connection the server had closed is
    replaced once, transparently (a GET can always be sent again).
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        keepalive_expiry: float = 4.0,
        max_redirects: int = 20,
    ) -> None:
        self._tls = verify
        self._connect_timeout = connect_timeout
        self._expiry = keepalive_expiry
        self._max_redirects = max_redirects
        self._idle: dict[Origin, list[_Connection]] = {}
        self._header_cache: dict[tuple[tuple[str, str], ...], bytes] = {}
        self._closed = False

    @property
    def idle_connections(self) -> int:
        """Connections open and waiting for a request."""
        return sum(len(idle) for idle in self._idle.values())

    async def get(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
        follow_redirects: bool = False,
        sink: Callable[[bytes], None] | None = None,
    ) -> Response:
        """The response to `GET url`, body read and decoded. `timeout` bounds the whole
        exchange (`httpx.ReadTimeout` after it); connecting has its own bound. Following a
        redirect to another origin drops the `Authorization` header. With `sink`, the body
        of a 200 reply goes to it piece by piece as it arrives, and `Response.body` is
        empty."""
        if self._closed:
            raise RuntimeError("the HTTP client is closed")
        key = tuple(headers.items()) if headers else ()
        extra = self._header_cache.get(key)
        if extra is None:  # a shape sends the same headers every time: encode them once
            if len(self._header_cache) >= 256:
                self._header_cache.clear()
            extra = self._header_cache[key] = _header_lines(headers)
        for _ in range(self._max_redirects + 1):
            target = _Target.of(url)
            response = await self._exchange(target, extra, url, timeout, sink)
            location = response.headers.get("location")
            if not follow_redirects or response.status not in _REDIRECTS or not location:
                return response
            following = urljoin(url, location)
            if _Target.of(following).origin != target.origin and headers:
                extra = _header_lines(
                    {k: v for k, v in headers.items() if k.lower() != "authorization"}
                )
            url = following
        raise httpx.TooManyRedirects(f"more than {self._max_redirects} redirects from {url}")

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when their request ends."""
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()

    # -- one request ----------------------------------------------------------------------

    async def _exchange(
        self,
        target: _Target,
        extra: bytes,
        url: str,
        timeout: float | None,
        sink: Callable[[bytes], None] | None,
    ) -> Response:
        request = b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (
            target.path.encode("ascii"),
            target.host_header,
            extra,
        )
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        connection, reused = await self._checkout(target.origin)
        while True:
            timer = None if deadline is None else loop.call_at(deadline, connection.expire)
            try:
                status, headers, body, keep = await _read_reply(connection, request, reused, sink)
            except BaseException as exc:
                connection.close()
                if connection.expired:
                    raise httpx.ReadTimeout(f"no whole reply within {timeout} s") from None
                if isinstance(exc, _Stale):  # send it again, on a new connection
                    connection, reused = await self._connect(target.origin), False
                    continue
                if isinstance(exc, Exception) and not isinstance(exc, httpx.HTTPError):
                    raise _read_failure(exc) from exc
                raise
            finally:
                if timer is not None:
                    timer.cancel()
            if keep and not self._closed:
                self._checkin(target.origin, connection)
            else:
                connection.close()
            return Response(status, headers, body, url)

    async def _checkout(self, origin: Origin) -> tuple[_Connection, bool]:
        idle = self._idle.get(origin)
        if idle:
            now = time.monotonic()
            while idle:
                connection = idle.pop()
                if connection.usable(now, self._expiry):
                    return connection, True
                connection.close()
        return await self._connect(origin), False

    def _checkin(self, origin: Origin, connection: _Connection) -> None:
        now = time.monotonic()
        connection.idle_since = now
        idle = self._idle.setdefault(origin, [])
        # The oldest sit at the bottom: close the expired ones there as the pool turns.
        while idle and not idle[0].usable(now, self._expiry):
            idle.pop(0).close()
        idle.append(connection)

    async def _connect(self, origin: Origin) -> _Connection:
        scheme, host, port = origin
        tls = None
        if scheme == "https":
            tls = self._tls or _default_tls()
        opening = asyncio.open_connection(
            host, port, ssl=tls, server_hostname=host if tls else None, limit=_HEAD_LIMIT
        )
        try:
            # Not asyncio.wait_for: before Python 3.12 it can turn a cancel that lands as the
            # connection is refused into the refusal, and a stopped sync would retry forever.
            reader, writer = await within(opening, self._connect_timeout)
        except asyncio.TimeoutError:
            raise httpx.ConnectTimeout(
                f"connecting to {host}:{port} took over {self._connect_timeout:.0f} s"
            ) from None
        except OSError as exc:  # refused, unreachable, no such host, TLS (ssl.SSLError)
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        # asyncio receives into a new 256 KiB buffer each time, which malloc maps and unmaps
        # (three system calls per reply of a quiet long-poll); 64 KiB stays on the heap.
        if hasattr(writer.transport, "max_size"):
            writer.transport.max_size = _RECEIVE_SIZE
        return _Connection(reader, writer)


@functools.cache
def _default_tls() -> ssl.SSLContext:
    """The system's certificate authorities, loaded once (~45 ms) and only if needed."""
    return httpx.create_ssl_context()


def _header_lines(headers: Mapping[str, str] | None) -> bytes:
    """The request's header lines: the caller's, with defaults like httpx's."""
    given = {k.lower(): (k, v) for k, v in (headers or {}).items()}
    given.setdefault("accept", ("Accept", "*/*"))
    given.setdefault("accept-encoding", ("Accept-Encoding", "gzip, deflate"))
    given.setdefault("connection", ("Connection", "keep-alive"))
    given.setdefault("user-agent", ("User-Agent", f"python-httpx/{httpx.__version__}"))
    given.pop("host", None)
    lines = []
    for name, value in given.values():
        if _BAD_HEADER.search(name) or _BAD_HEADER.search(value) or ":" in name:
            raise httpx.LocalProtocolError(f"the request header {name!r} is malformed")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")


async def _read_reply(
    connection: _Connection, request: bytes, reused: bool, sink: Callable[[bytes], None] | None
) -> tuple[int, Headers, bytes, bool]:
    """Send `request` and read its reply: (status, headers, body, whether the connection
    can serve another request); a 200 reply's body goes to `sink`, if given, instead.
    `_Stale` if a reused connection turns out closed."""
    reader = connection.reader
    try:
        connection.writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        if reused and (not isinstance(exc, asyncio.IncompleteReadError) or not exc.partial):
            raise _Stale from exc
        raise
    while True:
        status, version, headers = _parse_head(head)
        if status >= 200 or status == 101:
            break
        head = await reader.readuntil(b"\r\n\r\n")  # 100 Continue and the like: skip
    if status == 101:
        raise httpx.RemoteProtocolError("the server switched protocols unasked")
    connection_header = headers.get("connection")
    if connection_header is None:
        keep = version == b"1.1"
    else:
        tokens = {t.strip().lower() for t in connection_header.split(",")}
        keep = "close" not in tokens if version == b"1.1" else "keep-alive" in tokens
    encoding = headers.get("content-encoding", "").strip().lower()
    encoded = bool(encoding) and encoding != "identity"
    # The body as it arrives goes to the sink when nothing is left to do to it.
    into = sink if status == 200 and not encoded else None
    if status in (204, 304):
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader, into)
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"].split(",")[0])
        except ValueError:
            raise httpx.RemoteProtocolError(
                f"malformed Content-Length {headers['content-length']!r}"
            ) from None
        body = await _read_length(reader, length, into)
    else:
        body = await reader.read()
        keep = False
    if encoded:
        body = _decoded(body, encoding)
    if body and status == 200 and sink is not None:  # read whole (to the close, or encoded)
        sink(body)
        body = b""
    return status, headers, body, keep


async def _read_length(
    reader: asyncio.StreamReader, length: int, into: Callable[[bytes], None] | None
) -> bytes:
    """A body of `length` bytes: returned whole, or given to `into` as it arrives."""
    if into is None:
        return await reader.readexactly(length)
    while length:
        chunk = await reader.read(min(length, _RECEIVE_SIZE))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", length)
        into(chunk)
        length -= len(chunk)
    return b""


def _parse_head(head: bytes) -> tuple[int, bytes, Headers]:
    lines = head[:-4].decode("latin-1").split("\r\n")
    status_line = lines[0]
    if not status_line.startswith("HTTP/1.") or len(status_line) < 12:
        raise httpx.RemoteProtocolError(f"not an HTTP/1.x reply: {status_line[:80]!r}")
    try:
        status = int(status_line[9:12])
    except ValueError:
        raise httpx.RemoteProtocolError(f"malformed status line {status_line[:80]!r}") from None
    headers: Headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise httpx.RemoteProtocolError(f"malformed header line {line[:80]!r}")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return status, status_line[5:8].encode(), headers


async def _read_chunked(
    reader: asyncio.StreamReader, into: Callable[[bytes], None] | None
) -> bytes:
    """A chunked body: returned whole, or given to `into` chunk by chunk."""
    parts: list[bytes] = []
    keep = parts.append if into is None else into
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise httpx.RemoteProtocolError(f"malformed chunk size {line[:40]!r}") from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        chunk = await reader.readexactly(size + 2)
        if chunk[-2:] != b"\r\n":
            raise httpx.RemoteProtocolError("a chunk is longer than its size says")
        keep(chunk[:-2])


def _decoded(body: bytes, encoding: str) -> bytes:
    try:
        if encoding in ("gzip", "x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate, as some send
    except zlib.error as exc:
        raise httpx.RemoteProtocolError(f"the {encoding} body does not decode: {exc}") from exc
    raise httpx.RemoteProtocolError(f"the body is in an encoding not asked for: {encoding}")


def _read_failure(exc: Exception) -> httpx.TransportError:
    if isinstance(exc, asyncio.IncompleteReadError):
        return httpx.RemoteProtocolError("the server closed the connection mid-reply")
    if isinstance(exc, asyncio.LimitOverrunError | ValueError):
        return httpx.RemoteProtocolError(f"the reply's head is malformed or too long: {exc}")
    return httpx.ReadError(f"{type(exc).__name__}: {exc}")


__all__ = ["CONNECT_TIMEOUT", "Headers", "Http1Client", "Response"]
