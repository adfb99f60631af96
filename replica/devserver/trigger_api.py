"""Trigger.dev's realtime routes (trigger-realtime.md §1).

`/realtime/v1/runs/{id}`, `/realtime/v1/runs?tags=&createdAt=` and
`/realtime/v1/batches/{id}` authenticate the caller, then serve the feed like the configured
backend. The Electric backend (the default) is a proxy onto the shape engine: it builds the
`TaskRun` where-clause and column list the webapp builds, passes every other query parameter
through to `/v1/shape`, and applies the webapp's response rewrites (legacy header names,
`DEQUEUED` for old API versions). The native backend is `native_backend.py`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from replica.devserver.auth import FORBIDDEN_BODY, AuthError, Principal
from replica.devserver.electric_api import serve_shape
from replica.devserver.responses import TRIGGER_EXPOSED, VARY, RequestRefused, json_response
from replica.devserver.run_data import parse_duration
from replica.devserver.runs import RunError, RunService
from replica.devserver.shape_params import ShapeQuery, ShapeRequestError, build_definition
from replica.devserver.tables import Row
from replica.devserver.taskrun import ELECTRIC_COLUMNS, NEVER_SKIPPED

if TYPE_CHECKING:
    from replica.devserver.emulator import Emulator

log = logging.getLogger(__name__)

CURRENT_API_VERSION = "2025-07-16"
_UNSAFE_TAG = re.compile(r'[\x00-\x1f\x7f\\"]')
_PROXY_DROPPED = {"createdAt", "tags", "skipColumns", "table", "where", "columns"}


def trigger_cors(request: Request) -> dict[str, str]:
    """CORS for `corsStrategy: "all"` routes: any origin, the SDK's headers allowed."""
    return {
        "access-control-allow-origin": request.headers.get("origin") or "*",
        "access-control-expose-headers": TRIGGER_EXPOSED,
    }


def refusal(request: Request, status: int, body: Any, **headers: str) -> RequestRefused:
    """A Trigger.dev error reply (JSON body, CORS headers, no caching headers), to raise."""
    headers = {**trigger_cors(request), "vary": VARY, **headers}
    return RequestRefused(json_response(body, status, headers))


def authenticate(request: Request, *, allow_jwt: bool = True) -> Principal:
    """The caller of a Trigger.dev route; a 401 is raised as `RequestRefused`."""
    emu: Emulator = request.app.state.emulator
    try:
        return emu.auth.authenticate(request.headers.get("authorization"), allow_jwt=allow_jwt)
    except AuthError as exc:
        raise refusal(request, exc.status, exc.body) from exc


def forbidden(request: Request) -> RequestRefused:
    return refusal(request, 403, FORBIDDEN_BODY)


def not_found(request: Request, *, should_retry: bool = False) -> RequestRefused:
    return refusal(
        request, 404, {"error": "Not found"}, **{"x-should-retry": str(should_retry).lower()}
    )


def run_error(request: Request, exc: RunError) -> RequestRefused:
    return refusal(request, exc.status, {"error": str(exc)})


def run_resources(run: Row) -> list[tuple[str, str | None]]:
    """What a scope may name to reach `run`: the run itself, its task and its tags."""
    resources: list[tuple[str, str | None]] = [
        ("runs", run["friendlyId"]),
        ("tasks", run["taskIdentifier"]),
    ]
    return resources + [("tags", t) for t in RunService.tags_of(run)]


async def options_endpoint(request: Request) -> Response:
    """Preflight for every Trigger.dev route: allow whatever the browser asks for."""
    headers = {
        **trigger_cors(request),
        "access-control-allow-methods": "GET, POST, PUT, DELETE, OPTIONS",
        "access-control-allow-headers": request.headers.get("access-control-request-headers")
        or "*",
        "access-control-max-age": "86400",
    }
    return Response(b"", 204, headers)


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def selected_columns(principal: Principal, request: Request) -> tuple[str, ...]:
    """The feed's columns: the token's `realtime.skipColumns`, else the URL's, are left out."""
    skip = principal.skip_columns
    if skip is None:
        raw = request.query_params.get("skipColumns") or ""
        skip = [c.strip() for c in raw.split(",") if c.strip()]
    skipped = {c for c in skip if c not in NEVER_SKIPPED}
    return tuple(c for c in ELECTRIC_COLUMNS if c not in skipped)


@contextlib.contextmanager
def live_slot(request: Request) -> Iterator[None]:
    """Hold one of the environment's live-poll slots (§1.7); over the limit, a 429 is raised."""
    emu: Emulator = request.app.state.emulator
    if emu.live_requests >= emu.config.live_concurrency_limit:
        raise refusal(request, 429, {"error": "Too many concurrent requests"})
    emu.live_requests += 1
    try:
        yield
    finally:
        emu.live_requests -= 1


def without_dequeued(body: bytes) -> bytes:
    """The body as callers without the current `x-trigger-api-version` get it."""
    return body.replace(b'"status":"DEQUEUED"', b'"status":"EXECUTING"')


async def _proxy(
    request: Request,
    principal: Principal,
    where: str,
    *,
    remember: Callable[[str], None] | None = None,
) -> Response:
    """Serve the shape like the webapp's proxy to Electric does (§1.5), with its rewrites."""
    emu: Emulator = request.app.state.emulator
    legacy = "x-trigger-electric-version" not in request.headers
    q = ShapeQuery.from_request(request)
    if legacy and not q.handle and request.query_params.get("shape_id"):
        q.handle = request.query_params["shape_id"]
    q.table = 'public."TaskRun"'
    q.where = where
    q.params = {}
    q.columns = ",".join(f'"{c}"' for c in selected_columns(principal, request))
    q.secret = emu.config.electric_secret
    # The webapp fetches Electric with none of the caller's headers: no 304 for a revalidation.
    q.if_none_match = None
    try:
        definition = build_definition(emu, q)
    except ShapeRequestError as exc:
        # The clause is ours, not the caller's: a refusal is the emulator's bug, hence 500.
        log.error("realtime where clause refused: %s (%s)", exc.errors, where)
        raise refusal(request, 500, {"error": "Internal Server Error"}) from exc
    with live_slot(request) if q.live and q.handle else contextlib.nullcontext():
        response = await serve_shape(emu, q, definition)
    handle = response.headers.get("electric-handle")
    # The webapp reads the handle after renaming the headers for legacy clients, so it never
    # remembers a window for them.
    if remember is not None and handle and not legacy:
        remember(handle)
    return _rewrite(request, response, legacy)


def _rewrite(request: Request, response: Response, legacy: bool) -> Response:
    headers = dict(response.headers)
    headers.pop("content-length", None)
    headers.update(trigger_cors(request))
    if legacy:
        if "electric-handle" in headers:
            headers["electric-shape-id"] = headers.pop("electric-handle")
        if "electric-offset" in headers:
            headers["electric-chunk-last-offset"] = headers.pop("electric-offset")
    if isinstance(response, StreamingResponse):
        response.headers.update(headers)
        return response
    body = response.body
    if request.headers.get("x-trigger-api-version") != CURRENT_API_VERSION:
        body = without_dequeued(body)
    return Response(body, response.status_code, headers)


async def realtime_run(request: Request) -> Response:
    """`GET /realtime/v1/runs/{runId}`: one run."""
    emu: Emulator = request.app.state.emulator
    principal = authenticate(request)
    run = emu.runs.get(request.path_params["run_id"])
    if run is None or run["runtimeEnvironmentId"] != emu.environment_id:
        raise not_found(request)
    resources = run_resources(run)
    if run.get("batchId"):
        resources.append(("batch", "batch_" + str(run["batchId"])))
    if not principal.can("read", resources):
        raise forbidden(request)
    if emu.native is not None:
        columns = selected_columns(principal, request)
        return await emu.native.stream_run(request, columns, str(run["id"]))
    return await _proxy(request, principal, f'"id"={_sql_string(str(run["id"]))}')


def _created_at_floor(emu: Emulator, raw: str | None) -> dt.datetime | None:
    seconds = parse_duration(raw) if raw is not None else 24 * 3600.0
    if seconds is None:
        return None  # an unparsable duration adds no createdAt clause (Electric path)
    seconds = min(seconds, emu.config.created_at_max_age)
    floor = emu.clock.now() - dt.timedelta(seconds=seconds)
    # Bucketed (to the minute by default, as the native backend does) so that subscriptions
    # started close together share one shape instead of each building its own snapshot.
    bucket = max(emu.config.created_at_bucket, 0.001)
    epoch = dt.datetime(1970, 1, 1)
    seconds_since = (floor - epoch).total_seconds()
    return epoch + dt.timedelta(seconds=seconds_since // bucket * bucket)


async def realtime_runs(request: Request) -> Response:
    """`GET /realtime/v1/runs?tags=a,b&createdAt=1h`: runs with all the tags, in a window."""
    emu: Emulator = request.app.state.emulator
    principal = authenticate(request)
    raw_tags = request.query_params.get("tags")
    tags = [t.strip() for t in raw_tags.split(",")] if raw_tags is not None else []
    bad = [t for t in tags if not t or _UNSAFE_TAG.search(t)]
    if bad:
        details = [{"path": ["tags"], "message": f"Invalid tag: {t!r}"} for t in bad]
        raise refusal(request, 400, {"error": "Query Error", "details": details})
    resources: list[tuple[str, str | None]] = [("runs", None), ("tags", None)]
    resources += [("tags", t) for t in tags]
    if not principal.can("read", resources):
        raise forbidden(request)
    if emu.native is not None:
        return await emu.native.stream_runs(request, selected_columns(principal, request), tags)
    # The window is computed on the request without a handle and remembered under the
    # response's handle; a request with a handle whose window is forgotten gets none.
    handle = request.query_params.get("handle") or request.query_params.get("shape_id")
    if handle:
        floor = emu.handle_windows.get(handle)
    else:
        floor = _created_at_floor(emu, request.query_params.get("createdAt"))
    clauses = [f'"runtimeEnvironmentId"={_sql_string(emu.environment_id)}']
    if tags:
        clauses.append('"runTags" @> ARRAY[' + ",".join(_sql_string(t) for t in tags) + "]")
    if floor is not None:
        iso = floor.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        clauses.append(f'"createdAt" > {_sql_string(iso)}')

    def remember(new_handle: str) -> None:
        if floor is not None:
            emu.handle_windows.set(new_handle, floor)

    return await _proxy(request, principal, " AND ".join(clauses), remember=remember)


async def realtime_batch(request: Request) -> Response:
    """`GET /realtime/v1/batches/{batchId}`: the runs of a batch."""
    emu: Emulator = request.app.state.emulator
    principal = authenticate(request)
    batch = emu.runs.get_batch(request.path_params["batch_id"])
    if batch is None:
        raise not_found(request, should_retry=True)
    if not principal.can("read", [("batch", batch["friendlyId"]), ("runs", None)]):
        raise forbidden(request)
    if emu.native is not None:
        columns = selected_columns(principal, request)
        return await emu.native.stream_batch(request, columns, str(batch["id"]))
    where = (
        f'"runtimeEnvironmentId"={_sql_string(emu.environment_id)} AND '
        f'"batchId"={_sql_string(str(batch["id"]))}'
    )
    return await _proxy(request, principal, where)
