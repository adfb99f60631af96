"""The Starlette application: routes of Electric, Trigger.dev and the admin API, wired to one
Emulator, with the fault middleware and the background tasks (simulator, rotations)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from replica.devserver import electric_api, trigger_api, write_api
from replica.devserver.admin_api import admin_routes
from replica.devserver.config import DevServerConfig
from replica.devserver.emulator import Emulator
from replica.devserver.faults import FaultMiddleware
from replica.devserver.packets import object_endpoint
from replica.devserver.request_counts import RequestCountMiddleware
from replica.devserver.responses import RequestRefused, answer_refused_request

log = logging.getLogger(__name__)


def _routes() -> list[Route]:
    options = trigger_api.options_endpoint
    return [
        Route("/v1/shape", electric_api.shape_endpoint, methods=["GET"]),
        Route("/v1/shape", electric_api.shape_options, methods=["OPTIONS"]),
        Route("/v1/shape", electric_api.shape_delete, methods=["DELETE"]),
        Route("/v1/health", lambda r: _health(), methods=["GET"]),
        Route("/realtime/v1/runs", trigger_api.realtime_runs, methods=["GET"]),
        Route("/realtime/v1/runs/{run_id}", trigger_api.realtime_run, methods=["GET"]),
        Route("/realtime/v1/batches/{batch_id}", trigger_api.realtime_batch, methods=["GET"]),
        Route("/api/v1/tasks/{task_id}/trigger", write_api.trigger_task, methods=["POST"]),
        Route("/api/v1/tasks/batch", write_api.batch_trigger, methods=["POST"]),
        Route("/api/v2/tasks/batch", write_api.batch_trigger, methods=["POST"]),
        Route("/api/v3/batches", write_api.create_batch, methods=["POST"]),
        Route("/api/v3/batches/{batch_id}/items", write_api.stream_batch_items, methods=["POST"]),
        Route("/api/v1/runs/{run_id}/metadata", write_api.update_metadata, methods=["PUT"]),
        Route("/api/v2/runs/{run_id}/cancel", write_api.cancel_run, methods=["POST"]),
        Route("/api/v1/runs/{run_id}/packets/{field}", write_api.run_packet_url, methods=["GET"]),
        Route("/api/v1/packets/{path:path}", write_api.packet_download_url, methods=["GET"]),
        Route("/api/v1/packets/{path:path}", write_api.packet_upload_url, methods=["PUT"]),
        Route("/api/v2/packets/{path:path}", write_api.packet_upload_url, methods=["PUT"]),
        Route("/api/v1/auth/jwt/claims", write_api.jwt_claims, methods=["POST"]),
        Route("/realtime/{rest:path}", options, methods=["OPTIONS"]),
        Route("/api/{rest:path}", options, methods=["OPTIONS"]),
        Route("/_replica/objects/{path:path}", object_endpoint, methods=["GET", "PUT"]),
        *admin_routes(),
    ]


async def _health():  # type: ignore[no-untyped-def]
    from starlette.responses import JSONResponse

    return JSONResponse({"status": "active"})


async def _rotate_periodically(emu: Emulator, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        rotated = emu.rotate()
        if rotated:
            log.info("rotated %d shape handle(s)", len(rotated))


def create_app(emulator: Emulator | DevServerConfig | None = None) -> Starlette:
    """The ASGI app serving `emulator` (or a new one built from a config)."""
    if emulator is None:
        emulator = DevServerConfig()
    emu = emulator if isinstance(emulator, Emulator) else Emulator(emulator)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        emu.registry.bind_loop(asyncio.get_running_loop())
        tasks: list[asyncio.Task[None]] = []
        if emu.config.simulate:
            from replica.devserver.simulate import Simulator

            simulator = Simulator(emu)
            app.state.simulator = simulator
            tasks.append(asyncio.create_task(simulator.run()))
        if emu.config.rotate_every:
            tasks.append(asyncio.create_task(_rotate_periodically(emu, emu.config.rotate_every)))
        try:
            yield
        finally:
            emu.closing = True
            emu.wake_all()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            emu.registry.bind_loop(None)

    app = Starlette(
        routes=_routes(),
        # Counted outside the faults: an injected 429 is an answer the upstream gave.
        middleware=[
            Middleware(RequestCountMiddleware, counter=emu.requests),
            Middleware(FaultMiddleware, emu=emu),
        ],
        exception_handlers={RequestRefused: answer_refused_request},
        lifespan=lifespan,
    )
    app.state.emulator = emu
    app.state.simulator = None
    return app
