"""Response helpers shared by the emulator's routes: JSON bodies, CORS, Electric headers, and
`RequestRefused`, the error a helper raises to answer a request with an error response."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from replica._version import __version__

ELECTRIC_SERVER = f"ElectricSQL/1.7.12 (replica dev-server {__version__})"

#: What Electric exposes to browsers on /v1/shape (`plug/utils.ex` CORSHeaderPlug).
ELECTRIC_EXPOSED = (
    "electric-cursor,electric-handle,electric-has-data,electric-offset,electric-schema,"
    "electric-up-to-date,electric-internal-known-error,retry-after"
)
#: The Trigger.dev routes add the legacy header names and the trigger headers.
TRIGGER_EXPOSED = (
    ELECTRIC_EXPOSED + ",electric-shape-id,electric-chunk-last-offset,etag,"
    "x-trigger-jwt,x-trigger-jwt-claims,x-should-retry"
)

CACHE_INITIAL = "public, max-age=604800, s-maxage=3600, stale-while-revalidate=2629746"
CACHE_LIVE = "public, max-age=5, stale-while-revalidate=5"
CACHE_OTHER = "public, max-age=60, stale-while-revalidate=300"
CACHE_409_HANDLE = "public, max-age=60, must-revalidate"
CACHE_409_NO_HANDLE = "public, max-age=1, must-revalidate"

#: Electric's HTTP server (Bandit) negotiates compression and says so on every reply but a
#: 204, compressed or not; Trigger.dev's webapp (express `compression()`) does the same on
#: its JSON replies. A shared cache keeps one variant per `Accept-Encoding`.
VARY = "accept-encoding"


def cache_live_sse(sse_timeout: float) -> str:
    """An SSE reply is cacheable for just under the time the server keeps it open."""
    return f"public, max-age={max(1, int(sse_timeout) - 1)}"


class RequestRefused(Exception):
    """Answer the request with `response` (an error) instead of going on with the handler.

    Raised by a handler or by any helper it calls (authentication, body parsing, lookups,
    permission checks), so that no caller has to check whether a helper returned a value
    or an error; `answer_refused_request`, registered on the app, turns it into the reply.
    """

    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


async def answer_refused_request(request: Request, exc: Exception) -> Response:
    """The app's exception handler for `RequestRefused`: the response it carries, as is."""
    # Starlette types every exception handler as taking an Exception; only this one comes.
    assert isinstance(exc, RequestRefused)
    return exc.response


def json_response(
    body: Any,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A JSON response rendered with orjson."""
    return Response(
        orjson.dumps(body),
        status_code=status,
        headers=dict(headers or {}),
        media_type="application/json",
    )


def cors_headers(origin: str | None, exposed: str = ELECTRIC_EXPOSED) -> dict[str, str]:
    return {
        "access-control-allow-origin": origin or "*",
        "access-control-expose-headers": exposed,
        "access-control-allow-methods": "GET, POST, HEAD, DELETE, OPTIONS",
    }


def electric_headers(origin: str | None) -> dict[str, str]:
    """The headers of every `/v1/shape` reply with a body: CORS, `electric-server`, `vary`."""
    return {**cors_headers(origin), "electric-server": ELECTRIC_SERVER, "vary": VARY}


def electric_error(
    status: int,
    body: Any,
    origin: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> Response:
    """An Electric error (not 409): JSON body, `no-store`, never an `electric-handle`."""
    headers = {
        **electric_headers(origin),
        "cache-control": "no-store",
        "surrogate-control": "no-store",
        **(extra or {}),
    }
    return json_response(body, status, headers)


def invalid_request(errors: Mapping[str, list[str]], origin: str | None = None) -> Response:
    """Electric's 400: `{"message":"Invalid request","errors":{field:[...]}}`."""
    return electric_error(400, {"message": "Invalid request", "errors": dict(errors)}, origin)
