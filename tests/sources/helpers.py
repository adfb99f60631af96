"""Fixture rows of trigger-realtime.md §6 and a scripted Trigger.dev packets server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from replica.protocol.messages import ChangeMessage, parse_body
from replica.protocol.values import RowParser, parse_schema_header
from tests.support.scripted_server import Reply, Request

DATA = Path(__file__).parent / "data"
SCHEMA = parse_schema_header((DATA / "electric_schema.json").read_text().strip())

ROW_A = "cmek7q1xv0003l50ahz2b9r4d"
ROW_B = "cmek7r9kd0009l50a7c3q1m2w"
ROW_D = "cmek7tq5h000fl50a0y8d6k2s"
ROW_E = "cmek7v2ta000kl50a5n9e3h8c"
B_PATH = "run_cmek7r9kd0009l50a7c3q1m2w/payload.json"
B_PAYLOAD = {"rows": 10000, "file": "q3 sales.csv", "delimiter": ","}


def body(name: str) -> str:
    """The raw response body of a §6 fixture (tag_snapshot, live_update_c, run_d, run_e)."""
    return (DATA / f"{name}.json").read_text()


def changes(name: str, *, typed: bool = True) -> list[ChangeMessage]:
    """The change messages of a fixture body, parsed with the §6.1 schema (or left as the
    raw strings a server that omits the schema header would give)."""
    return parse_body(body(name), RowParser(SCHEMA) if typed else None).changes


def message(op: str = "update", **value: Any) -> ChangeMessage:
    """A TaskRun change message with the given (already parsed) values."""
    return ChangeMessage(f'"public"."TaskRun"/"{value.get("id")}"', op, dict(value))


# Public flags from the public status (SDK booleanHelpersFromRunStatus, §3.4).
_FAILED = {"FAILED", "CRASHED", "SYSTEM_FAILURE", "EXPIRED", "TIMED_OUT"}


def flags(status: str) -> set[str]:
    """The names of the boolean helpers true for a public status."""
    out = set()
    if status in {"PENDING_VERSION", "QUEUED", "DELAYED"}:
        out.add("isQueued")
    if status in {"DEQUEUED", "EXECUTING"}:
        out.add("isExecuting")
    if status == "WAITING":
        out.add("isWaiting")
    if status == "COMPLETED":
        out |= {"isSuccess", "isCompleted"}
    if status in _FAILED:
        out |= {"isFailed", "isCompleted"}
    if status == "CANCELED":
        out.add("isCancelled")
    return out


class PacketsServer:
    """Handler for a ScriptedServer: both packets routes and the presigned download.

    `objects` maps object-store paths to (body, content type). `run_route` False makes the
    per-run route answer 404 (a server that predates it). `fail` (a callable taking the
    request) may return a Reply to answer instead, for scripting failures.
    """

    def __init__(
        self,
        objects: dict[str, tuple[str, str]],
        *,
        run_route: bool = True,
        fail: Callable[[Request], Reply | None] | None = None,
    ) -> None:
        self.objects = objects
        self.run_route = run_route
        self.fail = fail
        self.base = ""
        # friendly run id -> path of its offloaded payload (what the run route presigns)
        self.run_paths = {p.split("/")[0]: p for p in objects if p.startswith("run_")}

    def __call__(self, request: Request) -> Reply:
        if self.fail is not None:
            reply = self.fail(request)
            if reply is not None:
                return reply
        path = request.path
        if path.startswith("/api/v1/runs/") and path.endswith(
            ("/packets/payload", "/packets/output")
        ):
            run_id = path.split("/")[4]
            if not self.run_route or run_id not in self.run_paths:
                return Reply(404, body={"error": "Not found"})
            return Reply(body={"presignedUrl": self._presign(self.run_paths[run_id])})
        if path.startswith("/api/v1/packets/"):
            object_path = unquote(path[len("/api/v1/packets/") :])
            return Reply(body={"presignedUrl": self._presign(object_path)})
        if path.startswith("/objects/"):
            found = self.objects.get(unquote(path[len("/objects/") :]))
            if found is None:
                return Reply(404, body="no such object")
            data, content_type = found
            return Reply(headers={"content-type": content_type}, body=data)
        return Reply(404, body={"error": "Not found"})

    def _presign(self, object_path: str) -> str:
        return f"{self.base}/objects/{quote(object_path, safe='/')}?expires=1&signature=s3cr3t"


def b_objects() -> dict[str, tuple[str, str]]:
    return {B_PATH: (json.dumps(B_PAYLOAD), "application/json")}
