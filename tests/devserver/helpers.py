"""Helpers of the dev-server tests."""

from __future__ import annotations

from typing import Any

import httpx

#: Headers of a current SDK: modern header names, current API version.
MODERN = {"x-trigger-electric-version": "1.0.0-beta.1", "x-trigger-api-version": "2025-07-16"}


def headers(token: str, **extra: str) -> dict[str, str]:
    """A realtime request's headers as the current SDK sends them, with `token`."""
    return {"authorization": f"Bearer {token}", **MODERN, **extra}


def run_ids(messages: list[Any]) -> set[str]:
    """Friendly ids of the runs a client holds after applying `messages`."""
    rows: dict[str, dict[str, Any]] = {}
    for m in messages:
        op = m.get("headers", {}).get("operation")
        if op == "insert":
            rows[m["key"]] = dict(m["value"])
        elif op == "update":
            rows.setdefault(m["key"], {}).update(m["value"])
        elif op == "delete":
            rows.pop(m["key"], None)
    return {r["friendlyId"] for r in rows.values()}


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


def resume(
    client: httpx.Client, path: str, last: httpx.Response, *, live: bool = False, **params: str
) -> httpx.Response:
    """The request that follows `last` on its feed: a catch-up, or with `live` a live poll."""
    query = {
        **params,
        "offset": last.headers["electric-offset"],
        "handle": last.headers["electric-handle"],
    }
    if live:
        query.update(live="true", cursor=last.headers.get("electric-cursor", ""))
    return client.get(path, params=query)
