"""Http1Client against real sockets: the scripted server for keep-alive behaviour, and a raw
server (canned bytes) for the wire forms a server may choose: chunked, gzip, deflate, bodies
read to the close, interim replies, malformed replies."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator, Callable, Sequence

import httpx
import pytest

from replica.devserver import DevServer
from replica.protocol.client import HttpxClient, as_http_client
from replica.protocol.http1 import Http1Client
from tests.support.scripted_server import Reply, Request, ScriptedServer
from tests.support.waiting import PATIENCE

pytestmark = pytest.mark.anyio


class RawServer:
    """Answers the n-th request on each connection with `answers(n, head)`: bytes written
    as they are, then the next request is awaited (or with `CLOSE`, the connection is
    closed); None closes the connection without a word."""

    def __init__(self, answers: Callable[[int, bytes], bytes | tuple[bytes, str] | None]) -> None:
        self.answers = answers
        self.heads: list[bytes] = []
        self.connections = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            for n in range(1_000):
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                answer = self.answers(n, head)
                if answer is None:
                    break
                writer.write(answer[0] if isinstance(answer, tuple) else answer)
                await writer.drain()
                if isinstance(answer, tuple):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


CLOSE = "close"


def reply(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def always(answer: bytes) -> Callable[[int, bytes], bytes]:
    return lambda n, head: answer


def chunked(parts: Sequence[bytes]) -> bytes:
    out = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts)
    return out + b"0\r\nx-trailer: yes\r\n\r\n"


@pytest.fixture
async def client() -> AsyncIterator[Http1Client]:
    http = Http1Client(keepalive_expiry=30.0)
    yield http
    await http.aclose()


# -- bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "status", "body"),
    [
        (reply(b"hello", "content-length: 5"), 200, b"hello"),
        (
            reply(chunked([b"hel", b"lo", b"!" * 70_000]), "transfer-encoding: chunked"),
            200,
            b"hello" + b"!" * 70_000,
        ),
        (
            reply(gzip.compress(b"zipped"), "content-encoding: gzip", "content-length: 26"),
            200,
            b"zipped",
        ),
        (
            reply(zlib.compress(b"deflated"), "content-encoding: deflate", "content-length: 16"),
            200,
            b"deflated",
        ),
        (reply(b"", status="204 No Content"), 204, b""),
        (b"HTTP/1.1 100 Continue\r\n\r\n" + reply(b"after", "content-length: 5"), 200, b"after"),
    ],
    ids=["length", "chunked", "gzip", "deflate", "204", "100-continue"],
)
async def test_bodies_in_every_wire_form_arrive_whole(
    client: Http1Client, answer: bytes, status: int, body: bytes
) -> None:
    async with RawServer(always(answer)) as server:
        for _ in range(2):  # and the connection serves the next request
            response = await client.get(server.url + "/x")
            assert (response.status, response.body) == (status, body)
        assert server.connections == 1


_LONG = bytes(range(256)) * 1_000  # several receive sizes
_GZIPPED = gzip.compress(_LONG)


@pytest.mark.parametrize(
    "answer",
    [
        reply(_LONG, f"content-length: {len(_LONG)}"),
        reply(
            chunked([_LONG[:1], _LONG[1:100_000], _LONG[100_000:]]), "transfer-encoding: chunked"
        ),
        reply(_GZIPPED, "content-encoding: gzip", f"content-length: {len(_GZIPPED)}"),
        (reply(_LONG), CLOSE),
    ],
    ids=["length", "chunked", "gzip", "read-to-close"],
)
async def test_a_200_body_goes_to_the_sink_as_it_arrives(
    client: Http1Client, answer: bytes | tuple[bytes, str]
) -> None:
    async with RawServer(always(answer)) as server:  # type: ignore[arg-type]
        pieces: list[bytes] = []
        response = await client.get(server.url, sink=pieces.append)
    assert (response.status, response.body) == (200, b"")
    assert b"".join(pieces) == _LONG
    if isinstance(answer, bytes) and b"gzip" not in answer[:200]:
        assert len(pieces) > 1  # given piece by piece, not gathered first


async def test_only_a_200_body_goes_to_the_sink(client: Http1Client) -> None:
    answers = [
        reply(b"", "content-length: 0", "location: /there", status="302 Found"),
        reply(b"gone away", "content-length: 9", status="409 Conflict"),
        reply(b"landed", "content-length: 6"),
    ]
    async with RawServer(lambda n, head: answers[n % 3]) as server:
        pieces: list[bytes] = []
        conflict = await client.get(server.url, sink=pieces.append, follow_redirects=True)
        assert (conflict.status, conflict.body, pieces) == (409, b"gone away", [])
        landed = await client.get(server.url, sink=pieces.append)
        assert (landed.status, landed.body, pieces) == (200, b"", [b"landed"])


async def test_a_body_cut_short_on_its_way_to_the_sink_is_an_error(client: Http1Client) -> None:
    answer = reply(_LONG[:70_000], f"content-length: {len(_LONG)}")
    async with RawServer(lambda n, head: (answer, CLOSE)) as server:
        with pytest.raises(httpx.RemoteProtocolError, match="mid-reply"):
            await client.get(server.url, sink=lambda piece: None)
    assert client.idle_connections == 0


async def test_a_body_read_to_the_close_ends_the_connection(client: Http1Client) -> None:
    async with RawServer(lambda n, head: (b"HTTP/1.1 200 OK\r\n\r\nall", CLOSE)) as server:
        response = await client.get(server.url)
        assert response.body == b"all"
        assert (await client.get(server.url)).body == b"all"
        assert server.connections == 2
    assert client.idle_connections == 0


async def test_connection_close_and_http_1_0_are_not_kept(client: Http1Client) -> None:
    answers = [
        reply(b"a", "content-length: 1", "connection: close"),
        b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\nb",
    ]
    async with RawServer(lambda n, head: answers[n] if n < len(answers) else None) as server:
        assert (await client.get(server.url)).body == b"a"
        assert client.idle_connections == 0
        assert server.connections == 1


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"SPDY/3 200 OK\r\n\r\n", "not an HTTP/1.x reply"),
        (b"HTTP/1.1 2xx OK\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
        (reply(b"", "content-length: many"), "malformed Content-Length"),
        (reply(b"zz\r\n", "transfer-encoding: chunked"), "malformed chunk size"),
        (reply(b"not gzip", "content-encoding: gzip", "content-length: 8"), "does not decode"),
        (reply(b"x", "content-encoding: br", "content-length: 1"), "not asked for"),
        (reply(b"short", "content-length: 50"), "closed the connection mid-reply"),
    ],
    ids=["protocol", "status", "header", "length", "chunk", "gzip", "br", "truncated"],
)
async def test_malformed_replies_are_protocol_errors(
    client: Http1Client, answer: bytes, message: str
) -> None:
    async with RawServer(lambda n, head: (answer, CLOSE)) as server:
        with pytest.raises(httpx.RemoteProtocolError, match=message):
            await client.get(server.url)
    assert client.idle_connections == 0


# -- requests -------------------------------------------------------------------------------


async def test_the_request_carries_host_defaults_and_the_callers_headers(
    client: Http1Client,
) -> None:
    async with RawServer(always(reply(b"", "content-length: 0"))) as server:
        await client.get(server.url + "/a b/é?q=1 2", {"Authorization": "Bearer t"})
        port = server.url.rsplit(":", 1)[1]
    head = server.heads[0].decode("latin-1").lower()
    assert head.startswith("get /a%20b/%c3%a9?q=1%202 http/1.1\r\n")
    for line in (f"host: 127.0.0.1:{port}", "authorization: bearer t", "accept-encoding: gzip"):
        assert f"\r\n{line}" in head


async def test_a_header_with_a_line_break_is_refused_before_sending(
    client: Http1Client,
) -> None:
    async with RawServer(always(reply(b"", "content-length: 0"))) as server:
        with pytest.raises(httpx.LocalProtocolError, match="malformed"):
            await client.get(server.url, {"Authorization": "Bearer t\r\nx-evil: 1"})
        assert server.heads == []


async def test_other_schemes_are_refused(client: Http1Client) -> None:
    with pytest.raises(httpx.UnsupportedProtocol, match="only http and https"):
        await client.get("ftp://127.0.0.1/x")


# -- connections ----------------------------------------------------------------------------


async def test_requests_at_once_each_keep_a_warm_connection() -> None:
    """Rounds of requests at once: the first round opens a connection per request, the
    later rounds reuse them all."""
    at_once, rounds = 12, 3
    arrived = 0
    all_in = asyncio.Event()

    async def handler(request: Request) -> Reply:
        nonlocal arrived
        arrived += 1
        if arrived % at_once == 0:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), PATIENCE)  # every request of the round is in
        return Reply(body=request.path)

    client = Http1Client(keepalive_expiry=30.0)
    async with ScriptedServer(handler) as server:
        for round_ in range(rounds):
            all_in.clear()
            replies = await asyncio.gather(
                *(client.get(f"{server.url}/r{round_}/{i}") for i in range(at_once))
            )
            assert [r.text for r in replies] == [f"/r{round_}/{i}" for i in range(at_once)]
        assert len(server.requests) == at_once * rounds
        assert server.connections == at_once
        assert client.idle_connections == at_once
        await client.aclose()
        assert client.idle_connections == 0


async def test_a_reused_connection_the_server_dropped_is_replaced(client: Http1Client) -> None:
    """The server reads the second request of a connection and closes it unanswered (as a
    server does when its idle timeout races the request): the client sends it again on a
    new connection, once."""
    answer = reply(b"ok", "content-length: 2")
    async with RawServer(lambda n, head: answer if n == 0 else None) as server:
        for _ in range(3):
            assert (await client.get(server.url)).body == b"ok"
        assert server.connections == 3
        assert len(server.heads) == 5  # 1 + (1 dropped + 1) + (1 dropped + 1)


async def test_a_new_connection_dropped_before_the_reply_is_an_error(
    client: Http1Client,
) -> None:
    async with RawServer(lambda n, head: None) as server:
        with pytest.raises(httpx.RemoteProtocolError, match="closed the connection"):
            await client.get(server.url)
        assert server.connections == 1


async def test_a_refused_connection_is_a_connect_error(client: Http1Client) -> None:
    with pytest.raises(httpx.ConnectError, match=r"cannot connect to 127\.0\.0\.1:1"):
        await client.get("http://127.0.0.1:1/")


async def test_a_cancelled_request_is_cancelled_even_as_its_connection_is_refused(
    client: Http1Client,
) -> None:
    """A cancel that lands as the refusal does must not turn into a network error: the
    caller would retry it, and an `Engine.stop()` would be lost (a sync that kept running
    after SIGTERM, its upstream gone)."""
    swallowed = []
    for turns in range(60):  # the cancel lands at each step of the connect in turn
        request = asyncio.ensure_future(client.get("http://127.0.0.1:1/"))
        for _ in range(turns):
            await asyncio.sleep(0)
        if not request.cancel():  # refused and done before the cancel: nothing to stop
            assert isinstance(request.exception(), httpx.ConnectError)
            continue
        try:
            await request
        except asyncio.CancelledError:
            continue
        except httpx.ConnectError:
            swallowed.append(turns)
    assert swallowed == [], "cancels turned into network errors"


async def test_a_reply_that_never_comes_times_out_and_its_connection_is_dropped(
    client: Http1Client,
) -> None:
    async with ScriptedServer(lambda request: Reply(hang=True)) as server:
        with pytest.raises(httpx.ReadTimeout, match=r"within 0\.2 s"):
            await client.get(server.url, timeout=0.2)
        assert client.idle_connections == 0


async def test_cancelling_a_request_drops_its_connection(client: Http1Client) -> None:
    arrived = asyncio.Event()

    def handler(request: Request) -> Reply:
        arrived.set()
        return Reply(hang=True)

    async with ScriptedServer(handler) as server:
        task = asyncio.ensure_future(client.get(server.url))
        await asyncio.wait_for(arrived.wait(), PATIENCE)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.idle_connections == 0


async def test_redirects_are_followed_when_asked_and_drop_the_token_across_origins(
    client: Http1Client,
) -> None:
    async with ScriptedServer(lambda request: Reply(body="landed")) as target:
        moved = reply(b"", "content-length: 0", f"location: {target.url}/there", status="302 Found")
        async with RawServer(always(moved)) as server:
            not_followed = await client.get(server.url, {"Authorization": "Bearer t"})
            assert not_followed.status == 302
            followed = await client.get(
                server.url + "/here", {"Authorization": "Bearer t"}, follow_redirects=True
            )
        assert (followed.status, followed.text, followed.url) == (
            200,
            "landed",
            f"{target.url}/there",
        )
        assert "authorization" not in target.requests[0].headers
        assert b"authorization: bearer t" in server.heads[1].lower()


async def test_text_follows_the_charset_of_the_content_type(client: Http1Client) -> None:
    answer = reply("é".encode("latin-1"), "content-type: text/plain; charset=latin-1",
                   "content-length: 1")  # fmt: skip
    async with RawServer(always(answer)) as server:
        assert (await client.get(server.url)).text == "é"


# -- against the emulator, and beside httpx ---------------------------------------------------


async def test_the_emulator_answers_both_clients_alike() -> None:
    with DevServer(long_poll_timeout=0.5) as server:
        headers = {
            "Authorization": f"Bearer {server.secret_key}",
            "x-trigger-electric-version": "1.0.0-beta.1",
        }
        url = f"{server.url}/realtime/v1/runs?tags=a&offset=-1"
        lean = Http1Client()
        async with httpx.AsyncClient() as plain:
            wrapped = as_http_client(plain)
            assert isinstance(wrapped, HttpxClient)
            replies = [await c.get(url, headers) for c in (lean, wrapped)]
            sunk: list[list[bytes]] = [[], []]
            for c, pieces in zip((lean, wrapped), sunk, strict=True):
                assert (await c.get(url, headers, sink=pieces.append)).body == b""
        await lean.aclose()
    first, second = replies
    assert first.status == second.status == 200
    assert first.body == second.body
    assert [b"".join(pieces) for pieces in sunk] == [first.body, first.body]
    for name in ("electric-offset", "electric-schema", "cache-control"):
        assert first.headers[name] == second.headers[name]
