"""A small web page showing a tag's runs, updating live: Starlette, fed by replica callbacks.

The page is rendered from the replica (`db.aruns`); a callback registered with
`db.on_change` pushes every change of a run with the tag to the open pages over
Server-Sent Events, and a few lines of JavaScript update the table in place.

    replica sync --tag user:1234 &                 # or pass --sync to sync in this process
    python examples/live_web/app.py --tag user:1234 --port 8000
    open http://127.0.0.1:8000/
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.routing import Route

import replica

PAGE = (Path(__file__).parent / "page.html").read_text()
COLUMNS = ("id", "task", "status", "progress", "created", "duration")


class Hub:
    """Fans each message out to every open page (one queue per Server-Sent Events client).

    `close()` ends every open stream: the server calls it when asked to stop, since it
    waits for open responses before shutting down and an event stream never ends by itself.
    """

    def __init__(self) -> None:
        self.clients: set[asyncio.Queue[str | None]] = set()
        self.closed = False

    def publish(self, message: dict[str, Any]) -> None:
        text = json.dumps(message)
        for queue in self.clients:
            queue.put_nowait(text)

    def close(self) -> None:
        self.closed = True
        for queue in self.clients:
            queue.put_nowait(None)  # the end of that stream

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[str | None]]:
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        if self.closed:
            queue.put_nowait(None)
        self.clients.add(queue)
        try:
            yield queue
        finally:
            self.clients.discard(queue)


def run_view(run: replica.Run) -> dict[str, Any]:
    """What the page shows of a run (also the JSON sent on each change)."""
    progress = (run.metadata or {}).get("progress")
    return {
        "id": run.id,
        "task": run.task_identifier,
        "status": run.status,
        "progress": f"{progress:.0%}" if isinstance(progress, (int, float)) else "",
        "created": run.created_at.strftime("%H:%M:%S") if run.created_at else "",
        "duration": f"{run.duration_ms / 1000:.1f} s" if run.is_finished else "",
        "finished": run.is_finished,
    }


def tag_filter(tag: str) -> str:
    quoted = tag.replace("'", "''")  # callback filters are SQL text and take no parameters
    return f"EXISTS (SELECT 1 FROM json_each(tags) WHERE value = '{quoted}')"


def create_app(db_path: str | None, tag: str, *, sync: bool = False) -> Starlette:
    """The app: `/` (the page), `/runs.json`, `/events` (Server-Sent Events)."""
    hub = Hub()
    feed = replica.tag(tag) if sync else None  # a missing token fails here, before serving
    db = replica.Replica(db_path)

    @db.on_change("runs", where=tag_filter(tag))
    async def push(change: replica.Change) -> None:
        if change.op == "reset":  # the log was pruned past us: pages reload everything
            hub.publish({"reset": True})
        elif change.op == "delete":
            hub.publish({"id": change.key, "deleted": True})
        elif (run := change.run()) is not None:
            hub.publish(run_view(run))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(db.alisten())]
        if feed is not None:
            tasks.append(asyncio.create_task(db.async_sync(feed)))
        print(f"live page for tag {tag} (replica {db.path})", flush=True)
        try:
            yield
        finally:
            db.stop()
            db.stop_sync()
            await asyncio.gather(*tasks, return_exceptions=True)
            db.close()
            print("stopped", flush=True)

    async def page(request: Request) -> HTMLResponse:
        runs = [run_view(run) for run in await db.aruns(tag, limit=200)]
        rows = "\n".join(
            f'<tr id="{html.escape(r["id"])}" class="{html.escape(r["status"])}">'
            + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in COLUMNS)
            + "</tr>"
            for r in runs
        )
        return HTMLResponse(PAGE.replace("{{tag}}", html.escape(tag)).replace("{{rows}}", rows))

    async def runs_json(request: Request) -> JSONResponse:
        return JSONResponse([run_view(run) for run in await db.aruns(tag, limit=200)])

    async def events(request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            with hub.subscribe() as queue:
                yield ": connected\n\n"
                while True:
                    try:
                        message = await asyncio.wait_for(queue.get(), timeout=15)
                    except asyncio.TimeoutError:
                        yield ": keep-alive\n\n"  # proxies close idle connections
                        continue
                    if message is None:  # shutting down
                        return
                    yield f"data: {message}\n\n"

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    routes = [Route("/", page), Route("/runs.json", runs_json), Route("/events", events)]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.hub = hub
    return app


class Server(uvicorn.Server):
    """uvicorn's server, ending the open event streams when told to stop (Ctrl-C, SIGTERM,
    `--duration`) so that shutdown does not wait for them."""

    def handle_exit(self, sig: int, frame: Any) -> None:
        # A signal handler: hand the work to the event loop rather than touch its queues.
        asyncio.get_running_loop().call_soon_threadsafe(self.stop)
        super().handle_exit(sig, frame)

    def stop(self) -> None:
        self.should_exit = True
        self.config.app.state.hub.close()


async def serve(server: Server, duration: float | None) -> None:
    if duration is not None:
        asyncio.get_running_loop().call_later(duration, server.stop)
    await server.serve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="the replica database (default: REPLICA_DB or replica.db)")
    parser.add_argument("--tag", default="user:1234", help="the tag whose runs to show")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--sync", action="store_true", help="also sync the tag in this process (needs a token)"
    )
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    args = parser.parse_args(argv)
    app = create_app(args.db, args.tag, sync=args.sync)
    # A client that ignores the end of its stream gets a second before being cut off.
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=1
    )
    print(f"serving http://{args.host}:{args.port}/", flush=True)
    asyncio.run(serve(Server(config), args.duration))
    return 0


if __name__ == "__main__":
    sys.exit(main())
