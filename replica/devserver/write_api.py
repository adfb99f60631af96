"""Trigger.dev's write-side routes, so runs exist and change: trigger, batches, metadata,
cancel, packets (presigned upload/download) and JWT claims, shaped as `@trigger.dev/sdk`
4.x calls them (`packages/core/src/v3/apiClient/index.ts`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from replica.devserver.auth import Principal, public_token
from replica.devserver.packets import packet_latency
from replica.devserver.runs import RunError
from replica.devserver.tables import Row
from replica.devserver.trigger_api import (
    authenticate,
    forbidden,
    json_response,
    not_found,
    refusal,
    run_error,
    run_resources,
    trigger_cors,
)

if TYPE_CHECKING:
    from replica.devserver.emulator import Emulator


async def _json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object (empty body: `{}`); anything else is refused with a 400."""
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise refusal(request, 400, {"error": "Invalid JSON body"}) from None
    if not isinstance(body, dict):
        raise refusal(request, 400, {"error": "Request body must be a JSON object"})
    return body


def _jwt_headers(emu: Emulator, scopes: list[str]) -> dict[str, str]:
    claims = {"sub": emu.environment_id, "pub": True}
    return {
        "x-trigger-jwt": public_token(emu.auth.secret_key, emu.environment_id, scopes),
        "x-trigger-jwt-claims": orjson.dumps(claims).decode(),
    }


def _may_trigger(principal: Principal, task: str) -> bool:
    return principal.can("write", [("tasks", task)]) or principal.can("trigger", [("tasks", task)])


async def trigger_task(request: Request) -> Response:
    """`POST /api/v1/tasks/{taskId}/trigger` -> `{"id": "run_..."}` + `x-trigger-jwt`."""
    emu: Emulator = request.app.state.emulator
    principal = authenticate(request)
    task = request.path_params["task_id"]
    if not _may_trigger(principal, task):
        raise forbidden(request)
    body = await _json_body(request)
    options = body.get("options") or {}
    try:
        result = emu.runs.trigger(task, body.get("payload"), options)
    except RunError as exc:
        raise run_error(request, exc) from exc
    headers = {
        **trigger_cors(request),
        **_jwt_headers(emu, [f"read:runs:{result.id}", f"write:inputStreams:{result.id}"]),
    }
    return json_response({"id": result.id, "isCached": result.is_cached}, 200, headers)


def _batch_response(
    emu: Emulator,
    request: Request,
    batch: Mapping[str, Any],
    runs: list[Mapping[str, Any]],
    cached: bool = False,
) -> Response:
    body = {
        "id": batch["friendlyId"],
        "runCount": int(batch["runCount"] or 0),
        "isCached": cached,
        "runs": [
            {"id": r["friendlyId"], "taskIdentifier": r["taskIdentifier"], "isCached": False}
            for r in runs
        ],
    }
    headers = {**trigger_cors(request), **_jwt_headers(emu, [f"read:batch:{batch['friendlyId']}"])}
    return json_response(body, 200, headers)


def _items_allowed(principal: Principal, items: list[Any]) -> bool:
    return all(
        isinstance(i, Mapping) and _may_trigger(principal, str(i.get("task", ""))) for i in items
    )


async def batch_trigger(request: Request) -> Response:
    """`POST /api/v1|v2/tasks/batch` with `{items: [{task, payload, options}]}`."""
    emu: Emulator = request.app.state.emulator
    principal = authenticate(request)
    body = await _json_body(request)
    items = body.get("items")
    if not isinstance(items, list) or not items:
        raise refusal(request, 400, {"error": "items must be a non-empty array"})
    if not _items_allowed(principal, items):
        raise forbidden(request)
    try:
        batch, runs = emu.runs.batch_trigger(items)
    except (RunError, KeyError) as exc:
        raise refusal(request, 400, {"error": str(exc)}) from exc
    return _batch_response(emu, request, batch, runs)


async def create_batch(request: Request) -> Response:
    """`POST /api/v3/batches` (phase 1 of the SDK's 2-phase batch trigger)."""
    emu: Emulator = request.app.state.emulator
    principal = authenticate(request)
    body = await _json_body(request)
    count = body.get("runCount")
    if not isinstance(count, int) or count <= 0:
        raise refusal(request, 400, {"error": "runCount must be a positive integer"})
    tasks = body.get("taskIdentifiers") or []
    if not all(_may_trigger(principal, str(t)) for t in tasks) or (
        not tasks and principal.kind != "secret"
    ):
        raise forbidden(request)
    batch = emu.runs.create_batch(count, body.get("idempotencyKey"))
    return _batch_response(emu, request, batch, [])


async def stream_batch_items(request: Request) -> Response:
    """`POST /api/v3/batches/{batchId}/items` with NDJSON `{index, task, payload, options}`."""
    emu: Emulator = request.app.state.emulator
    principal = authenticate(request)
    batch = emu.runs.get_batch(request.path_params["batch_id"])
    if batch is None:
        raise not_found(request)
    items = []
    for line in (await request.body()).splitlines():
        if line.strip():
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                raise refusal(request, 400, {"error": "Invalid NDJSON line"}) from None
    if not _items_allowed(principal, items):
        raise forbidden(request)
    seen = emu.batch_items.setdefault(batch["id"], set())
    fresh = [i for i in items if i.get("index") not in seen]
    try:
        emu.runs.add_to_batch(batch, fresh)
    except (RunError, KeyError) as exc:
        raise refusal(request, 400, {"error": str(exc)}) from exc
    seen.update(i.get("index") for i in fresh)
    body = {
        "id": batch["friendlyId"],
        "itemsAccepted": len(fresh),
        "itemsDeduplicated": len(items) - len(fresh),
        "sealed": True,
    }
    return json_response(body, 200, trigger_cors(request))


def _writable_run(request: Request, emu: Emulator) -> Row:
    """The run named by the path, if the caller may write to it (else 401, 404 or 403)."""
    principal = authenticate(request)
    run = emu.runs.get(request.path_params["run_id"])
    if run is None:
        raise not_found(request)
    if not principal.can("write", [("runs", run["friendlyId"])]):
        raise forbidden(request)
    return run


async def update_metadata(request: Request) -> Response:
    """`PUT /api/v1/runs/{runId}/metadata` with `{metadata?, operations?}`."""
    emu: Emulator = request.app.state.emulator
    run = _writable_run(request, emu)
    body = await _json_body(request)
    try:
        metadata = emu.runs.set_metadata(
            run["friendlyId"], body.get("metadata"), body.get("operations")
        )
    except RunError as exc:
        raise run_error(request, exc) from exc
    return json_response({"metadata": metadata}, 200, trigger_cors(request))


async def cancel_run(request: Request) -> Response:
    """`POST /api/v2/runs/{runId}/cancel`."""
    emu: Emulator = request.app.state.emulator
    run = _writable_run(request, emu)
    try:
        emu.runs.cancel(run["friendlyId"])
    except RunError as exc:
        raise run_error(request, exc) from exc
    return json_response({"id": run["friendlyId"]}, 200, trigger_cors(request))


async def jwt_claims(request: Request) -> Response:
    """`POST /api/v1/auth/jwt/claims`: what the SDK signs public tokens with."""
    emu: Emulator = request.app.state.emulator
    authenticate(request, allow_jwt=False)
    return json_response({"sub": emu.environment_id, "pub": True}, 200, trigger_cors(request))


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def packet_download_url(request: Request) -> Response:
    """`GET /api/v1/packets/{path}` -> `{"presignedUrl"}` (JWT allowed, no per-run check)."""
    emu: Emulator = request.app.state.emulator
    await packet_latency(request)
    authenticate(request)
    url = emu.objects.presign(_base_url(request), request.path_params["path"])
    return json_response({"presignedUrl": url}, 200, trigger_cors(request))


async def packet_upload_url(request: Request) -> Response:
    """`PUT /api/v1|v2/packets/{path}` -> a presigned upload URL (v2 adds `storagePath`)."""
    emu: Emulator = request.app.state.emulator
    authenticate(request, allow_jwt=False)
    path = request.path_params["path"]
    body: dict[str, str] = {"presignedUrl": emu.objects.presign(_base_url(request), path, "PUT")}
    if request.url.path.startswith("/api/v2/"):
        body["storagePath"] = path
    return json_response(body, 200, trigger_cors(request))


async def run_packet_url(request: Request) -> Response:
    """`GET /api/v1/runs/{runId}/packets/{payload|output}`, authorised against the run."""
    emu: Emulator = request.app.state.emulator
    await packet_latency(request)
    principal = authenticate(request)
    run = emu.runs.get(request.path_params["run_id"])
    field = request.path_params["field"]
    if run is None or field not in ("payload", "output"):
        raise not_found(request)
    if not principal.can("read", run_resources(run)):
        raise forbidden(request)
    if run.get(f"{field}Type") != "application/store" or not run.get(field):
        raise not_found(request)
    url = emu.objects.presign(_base_url(request), str(run[field]))
    return json_response({"presignedUrl": url}, 200, trigger_cors(request))
