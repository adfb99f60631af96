"""A web page where a shape API was expected (a wrong API URL, a proxy's error page) is
named as such in one line: never pasted into errors or logs as raw HTML."""

from __future__ import annotations

import pytest

from replica.errors import UpstreamError
from tests.protocol.helpers import Recorder, take
from tests.support.scripted_server import Reply, Script, ScriptedServer, shape_reply

pytestmark = pytest.mark.anyio

PAGE = """<!DOCTYPE HTML>
<html lang="en">
  <head><title>Error response</title></head>
  <body><h1>Error response</h1><p>Nothing matches the given URI.</p></body>
</html>"""
HTML = {"content-type": "text/html"}


@pytest.mark.parametrize("lean", [False, True], ids=["httpx", "lean"])
@pytest.mark.parametrize("status", [404, 200])
async def test_a_web_page_is_named_not_pasted(status: int, lean: bool) -> None:
    """(A 200 body is decoded as it arrives: its first bytes are what name the page.)"""
    async with ScriptedServer(Script(Reply(status, HTML, PAGE))) as server:
        with pytest.raises(UpstreamError) as raised:
            await take(server.url, 1, lean=lean)
    message = str(raised.value)
    assert f"HTTP {status} with a web page ('Error response')" in message
    assert "<" not in message and "\n" not in message
    assert "api_url" in raised.value.advice


async def test_a_proxy_error_page_is_retried_and_logged_by_its_title() -> None:
    gateway = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    script = Script(Reply(502, HTML, gateway), shape_reply(offset="0_0", done=True))
    recorder = Recorder()
    async with ScriptedServer(script) as server:
        await take(server.url, 1, recorder=recorder)
    retry = next(e for e in recorder.events if e.kind == "retry")
    assert retry.message.startswith("HTTP 502 (a web page ('502 Bad Gateway')); retrying")
