"""Helpers of the dev-server tests."""

from __future__ import annotations

from typing import Any

import httpx


def sync(
    client: httpx.Client, params: dict[str, str], path: str = "/v1/shape", **kw: Any
) -> tuple[httpx.Response, list[Any]]:
    """Follow a shape from offset -1 to its first up-to-date; (last response, all messages)."""
    messages: list[Any] = []
    query = {**params, "offset": "-1"}
    for _ in range(100):
        r = client.get(path, params=query, **kw)
        assert r.status_code == 200, r.text
        body = r.json()
        messages.extend(body)
        if body and body[-1].get("headers", {}).get("control") == "up-to-date":
            return r, messages
        query = {
            **params,
            "offset": r.headers["electric-offset"],
            "handle": r.headers["electric-handle"],
        }
    raise AssertionError("no up-to-date after 100 requests")
