"""The admin API under `/_replica/`: define tables, write rows, drive runs, rotate shapes,
inject faults, mint tokens, move the clock, forget handle windows, count shape requests.
Every route but `/_replica/health` needs `Authorization: Bearer <secret key>`. Documented in
docs/emulator.md."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from replica.devserver.auth import AuthError, public_token
from replica.devserver.faults import FaultSpecError, make_rule
from replica.devserver.responses import json_response
from replica.devserver.runs import RunError
from replica.devserver.tables import TableError

if TYPE_CHECKING:
    from replica.devserver.emulator import Emulator

#: An admin route: the request, the emulator and the JSON body in, a JSON-able value out.
Handler = Callable[[Request, "Emulator", dict[str, Any]], Awaitable[Any]]


def _admin(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler: secret-key auth, JSON body in, JSON out, errors as 400/404."""

    async def endpoint(request: Request) -> Response:
        emu: Emulator = request.app.state.emulator
        try:
            emu.auth.authenticate(request.headers.get("authorization"), allow_jwt=False)
        except AuthError as exc:
            return json_response(exc.body, exc.status)
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return json_response({"error": "invalid JSON body"}, 400)
        if not isinstance(body, dict):
            return json_response({"error": "the body must be a JSON object"}, 400)
        try:
            result = await handler(request, emu, body)
        except RunError as exc:
            return json_response({"error": str(exc)}, exc.status)
        except (TableError, FaultSpecError, ValueError, KeyError, TypeError) as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response(result)

    return endpoint


async def health(request: Request) -> Response:
    emu: Emulator = request.app.state.emulator
    return json_response({"ok": True, "lsn": str(emu.db.lsn)})


async def info(request: Request, emu: Emulator, body: dict[str, Any]) -> Any:
    c = emu.config
    return {
        "environment_id": emu.environment_id,
        "lsn": str(emu.db.lsn),
        "txid": emu.db.txid,
        "tables": [t.qualified for t in emu.db.tables.values()],
        "shapes": len(emu.registry.shapes()),
        "live_requests": emu.live_requests,
        "clock_offset": emu.clock.offset,
        "config": {
            "long_poll_timeout": c.long_poll_timeout,
            "chunk_bytes": c.chunk_bytes,
            "chunk_rows": c.chunk_rows,
            "live_concurrency_limit": c.live_concurrency_limit,
            "realtime_backend": c.realtime_backend,
            "created_at_max_age": c.created_at_max_age,
            "created_at_bucket": c.created_at_bucket,
            "handle_window_ttl": c.handle_window_ttl,
            "native_max_list_results": c.native_max_list_results,
            "native_live_poll_jitter": c.native_live_poll_jitter,
            "native_working_set_ttl": c.native_working_set_ttl,
            "payload_offload_threshold": c.payload_offload_threshold,
            "simulate": c.simulate,
            "seed": c.seed,
            "speed": c.speed,
        },
    }


async def define_table(request: Request, emu: Emulator, body: dict[str, Any]) -> Any:
    columns = body["columns"]
    if isinstance(columns, list):
        columns = [tuple(c) for c in columns]
    table = emu.db.define_table(
        body["name"],
        columns,
        body.get("primary_key") or (),
        schema=body.get("schema", "public"),
        not_null=body.get("not_null") or (),
    )
    return {"table": table.qualified, "schema": table.electric_schema(tuple(table.columns))}


async def list_tables(request: Request, emu: Emulator, body: dict[str, Any]) -> Any:
    return {
        "tables": [
            {
                "table": t.qualified,
                "primary_key": list(t.primary_key),
                "schema": t.electric_schema(tuple(t.columns)),
                "rows": emu.db.count(t),
            }
            for t in emu.db.tables.values()
        ]
    }


async def table_rows(request: Request, emu: Emulator, body: dict[str, Any]) -> Any:
    table = emu.db.table(request.path_params["name"])
    return {"rows": emu.db.rows(table)}


async def transaction(request: Request, emu: Emulator, body: dict[str, Any]) -> Any:
    ops = body.get("ops")
    if not isinstance(ops, list) or not ops:
        raise ValueError("ops must be a non-empty list")
    tx = emu.db.transaction()
    for op in ops:
        kind = op.get("op")
        if kind == "insert":
            tx.insert(op["table"], op["values"])
        elif kind == "update":
            tx.update(op["table"], op["key"], op["values"])
        elif kind == "delete":
            tx.delete(op["table"], op["key"])
        else:
            raise ValueError(f"unknown op {kind!r}: use insert, update or delete")
    txn = tx.commit()
    assert txn is not None
    return {"lsn": str(txn.lsn), "txid": txn.txid, "changes": len(txn.changes)}


async def list_runs(request: Request, emu: Emulator, body: dict[str, Any]) -> Any:
    return {"runs": emu.runs.all()}


async def trigger_run(request: Request, emu: Emulator, body: dict[str, Any]) -> Any:
    result = emu.runs.trigger(body["task"], body.get("payload"), body.get("options") or {})
    return {"id": result.id, "run": result.run}


async def run_status(request: Request, emu: Emulator, body: dict[str, Any]) -> Any:
    run_id = request.path_params["run_id"]
    values = dict(body)
    status = values.pop("status")
    return {"run": emu.runs.transition(run_id, status, **values)}


async def update_run(request: Request, emu: Emulator, body: dict[str, Any]) -> Any:
    return {"run": emu.runs.update(request.path_params["run_id"], **body)}


async def list_shapes(request: Request, emu: Emulator, body: dict[str, Any]) -> Any:
    return {"shapes": [emu.shape_info(s) for s in emu.registry.shapes()]}


async def rotate(request: Request, emu: Emulator, body: dict[str, Any]) -> Any:
    return {"rotated": emu.rotate(handle=body.get("handle"), table=body.get("table"))}


async def list_faults(request: Request, emu: Emulator, body: dict[str, Any]) -> Any:
    return {"faults": [r.to_json() for r in emu.faults.rules()]}


async def add_fault(request: Request, emu: Emulator, body: dict[str, Any]) -> Any:
    options = dict(body)
    kind = str(options.pop("kind", ""))
    rule = emu.faults.add(make_rule(kind, options))
    return {"fault": rule.to_json()}


async def clear_faults(request: Request, emu: Emulator, body: dict[str, Any]) -> Any:
    fault_id = request.path_params.get("fault_id")
    if fault_id is not None:
        return {"removed": emu.faults.remove(int(fault_id))}
    emu.faults.clear()
    return {"removed": True}


async def mint_token(request: Request, emu: Emulator, body: dict[str, Any]) -> Any:
    scopes = body.get("scopes") or []
    token = public_token(
        emu.auth.secret_key,
        emu.environment_id,
        [str(s) for s in scopes],
        expires_in=float(body.get("expires_in", 3600)),
        skip_columns=body.get("skip_columns"),
    )
    return {"token": token}


def clock_state(emu: Emulator) -> dict[str, Any]:
    return {
        "now": emu.clock.now().isoformat(timespec="milliseconds") + "Z",
        "offset": emu.clock.offset,
    }


async def get_clock(request: Request, emu: Emulator, body: dict[str, Any]) -> Any:
    return clock_state(emu)


async def advance_clock(request: Request, emu: Emulator, body: dict[str, Any]) -> Any:
    emu.clock.advance(float(body["advance"]))
    return clock_state(emu)


async def list_handle_windows(request: Request, emu: Emulator, body: dict[str, Any]) -> Any:
    return {"handle_windows": emu.handle_window_info()}


async def forget_handle_windows(request: Request, emu: Emulator, body: dict[str, Any]) -> Any:
    return {"forgotten": emu.handle_windows.forget(body.get("handle"))}


async def request_counts(request: Request, emu: Emulator, body: dict[str, Any]) -> Any:
    return emu.requests.tally().to_json()


async def reset_request_counts(request: Request, emu: Emulator, body: dict[str, Any]) -> Any:
    return emu.requests.reset().to_json()


def admin_routes() -> list[Route]:
    p = "/_replica"
    return [
        Route(f"{p}/health", health, methods=["GET"]),
        Route(f"{p}/info", _admin(info), methods=["GET"]),
        Route(f"{p}/tables", _admin(list_tables), methods=["GET"]),
        Route(f"{p}/tables", _admin(define_table), methods=["POST"]),
        Route(f"{p}/tables/{{name}}/rows", _admin(table_rows), methods=["GET"]),
        Route(f"{p}/transactions", _admin(transaction), methods=["POST"]),
        Route(f"{p}/runs", _admin(list_runs), methods=["GET"]),
        Route(f"{p}/runs", _admin(trigger_run), methods=["POST"]),
        Route(f"{p}/runs/{{run_id}}", _admin(update_run), methods=["PATCH"]),
        Route(f"{p}/runs/{{run_id}}/status", _admin(run_status), methods=["POST"]),
        Route(f"{p}/shapes", _admin(list_shapes), methods=["GET"]),
        Route(f"{p}/shapes/rotate", _admin(rotate), methods=["POST"]),
        Route(f"{p}/faults", _admin(list_faults), methods=["GET"]),
        Route(f"{p}/faults", _admin(add_fault), methods=["POST"]),
        Route(f"{p}/faults", _admin(clear_faults), methods=["DELETE"]),
        Route(f"{p}/faults/{{fault_id}}", _admin(clear_faults), methods=["DELETE"]),
        Route(f"{p}/tokens", _admin(mint_token), methods=["POST"]),
        Route(f"{p}/clock", _admin(get_clock), methods=["GET"]),
        Route(f"{p}/clock", _admin(advance_clock), methods=["POST"]),
        Route(f"{p}/handle-windows", _admin(list_handle_windows), methods=["GET"]),
        Route(f"{p}/handle-windows", _admin(forget_handle_windows), methods=["DELETE"]),
        Route(f"{p}/requests", _admin(request_counts), methods=["GET"]),
        Route(f"{p}/requests", _admin(reset_request_counts), methods=["DELETE"]),
    ]
