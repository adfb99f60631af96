"""The emulated object store behind offloaded packets, with HMAC-signed presigned URLs.

Objects live in the emulator's SQLite file (`_objects`). A presigned URL is
`<base>/_replica/objects/<path>?expires=<unix s>&signature=<hmac>`: anyone holding it may GET
(or PUT, for upload URLs) until it expires, like an S3 presigned URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from replica.devserver.tables import Database

#: How long presigned URLs stay valid (Trigger.dev presigns for about an hour).
PRESIGN_SECONDS = 3600


class ObjectStore:
    """Packets by path: content type and bytes."""

    def __init__(self, db: Database, signing_key: str) -> None:
        self.db = db
        self._key = signing_key.encode()
        with db.lock:
            db.connection.execute(
                "CREATE TABLE IF NOT EXISTS _objects (path TEXT PRIMARY KEY,"
                " content_type TEXT NOT NULL, body BLOB NOT NULL)"
            )

    def put(self, path: str, body: bytes, content_type: str = "application/json") -> None:
        with self.db.lock:
            self.db.connection.execute(
                "INSERT OR REPLACE INTO _objects (path, content_type, body) VALUES (?, ?, ?)",
                (path, content_type, body),
            )

    def get(self, path: str) -> tuple[bytes, str] | None:
        with self.db.lock:
            row = self.db.connection.execute(
                "SELECT body, content_type FROM _objects WHERE path = ?", (path,)
            ).fetchone()
        return (bytes(row[0]), row[1]) if row else None

    def _signature(self, method: str, path: str, expires: int) -> str:
        message = f"{method}\n{path}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def presign(self, base_url: str, path: str, method: str = "GET") -> str:
        """A URL that lets its holder `method` the object at `path` for an hour."""
        expires = int(time.time()) + PRESIGN_SECONDS
        signature = self._signature(method, path, expires)
        return (
            f"{base_url.rstrip('/')}/_replica/objects/{quote(path, safe='/')}"
            f"?expires={expires}&signature={signature}"
        )

    def check(self, method: str, path: str, expires: str | None, signature: str | None) -> bool:
        try:
            when = int(expires or "")
        except ValueError:
            return False
        if when < time.time() or not signature:
            return False
        return hmac.compare_digest(self._signature(method, path, when), signature)


async def packet_latency(request: Request) -> None:
    """Wait the configured `packet_latency` before a download route answers: asleep on the
    event loop, so that every other request is served meanwhile."""
    seconds = request.app.state.emulator.config.packet_latency
    if seconds > 0:
        await asyncio.sleep(seconds)


async def object_endpoint(request: Request) -> Response:
    """`GET`/`PUT /_replica/objects/<path>`: the presigned download and upload target."""
    store: ObjectStore = request.app.state.emulator.objects
    path = request.path_params["path"]
    method = "PUT" if request.method == "PUT" else "GET"
    if method == "GET":
        await packet_latency(request)
    q = request.query_params
    if not store.check(method, path, q.get("expires"), q.get("signature")):
        return Response(
            b"<Error><Code>AccessDenied</Code><Message>Request has expired or the signature"
            b" does not match</Message></Error>",
            403,
            media_type="application/xml",
        )
    if method == "PUT":
        body = await request.body()
        store.put(path, body, request.headers.get("content-type") or "application/octet-stream")
        return Response(b"", 200, {"access-control-allow-origin": "*"})
    found = store.get(path)
    if found is None:
        return Response(b"<Error><Code>NoSuchKey</Code></Error>", 404, media_type="application/xml")
    body, content_type = found
    # The SDK parses the download by its exact content-type: no charset suffix added.
    return Response(body, 200, {"access-control-allow-origin": "*", "content-type": content_type})
