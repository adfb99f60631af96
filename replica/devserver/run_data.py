"""Run data as Trigger.dev handles it: serialized packets, metadata operations, durations."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson


class RunDataError(ValueError):
    """Invalid metadata operations or values (answered with 400)."""


_FORBIDDEN_METADATA_KEYS = {"__proto__", "constructor", "prototype"}


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|hr|h|m|s)", re.IGNORECASE)
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "hr": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> float | None:
    """`1h30m`, `2d`, `30s` -> seconds; None when it does not parse (like the webapp)."""
    s = text.strip().replace(" ", "")
    if not s:
        return None
    total, pos = 0.0, 0
    for m in _DURATION.finditer(s):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2).lower()]
        pos = m.end()
    return total if pos == len(s) and pos > 0 else None


def serialize_packet(data: Any, data_type: str | None) -> tuple[str, str]:
    """(text, type) for a payload/output as received from an API caller or the simulator.

    With an explicit type a string is the serialized packet already (what the SDK sends:
    superjson or plain text); without one the value is JSON, like a raw HTTP trigger.
    """
    if data_type is None:
        return orjson.dumps(data).decode(), "application/json"
    if isinstance(data, str):
        return data, data_type
    return orjson.dumps(data).decode(), data_type


def apply_metadata_operations(current: dict[str, Any], operations: Sequence[Any]) -> dict[str, Any]:
    """Apply Trigger.dev metadata operations (`set`, `delete`, `append`, `remove`,
    `increment`, `update`) to a metadata object; keys may be `$.a.b` JSON paths."""
    result = orjson.loads(orjson.dumps(current))
    for op in operations:
        if not isinstance(op, Mapping) or "type" not in op:
            raise RunDataError("each metadata operation needs a type")
        kind = op["type"]
        if kind == "update":
            value = op.get("value")
            if not isinstance(value, Mapping):
                raise RunDataError("update operations need an object value")
            result.update(value)
            continue
        key = str(op.get("key", ""))
        path = key[2:].split(".") if key.startswith("$.") else [key]
        if not key or any(p in _FORBIDDEN_METADATA_KEYS or not p for p in path):
            raise RunDataError(f"invalid metadata key {key!r}")
        parent = result
        for part in path[:-1]:
            nxt = parent.get(part)
            if not isinstance(nxt, dict):
                nxt = parent[part] = {}
            parent = nxt
        leaf = path[-1]
        if kind == "set":
            parent[leaf] = op.get("value")
        elif kind == "delete":
            parent.pop(leaf, None)
        elif kind == "append":
            existing = parent.get(leaf)
            if existing is None:
                parent[leaf] = [op.get("value")]
            elif isinstance(existing, list):
                existing.append(op.get("value"))
            else:
                parent[leaf] = [existing, op.get("value")]
        elif kind == "remove":
            existing = parent.get(leaf)
            if isinstance(existing, list):
                parent[leaf] = [v for v in existing if v != op.get("value")]
        elif kind == "increment":
            existing = parent.get(leaf, 0)
            if not isinstance(existing, (int, float)):
                existing = 0
            parent[leaf] = existing + (op.get("value") or 0)
        else:
            raise RunDataError(f"unknown metadata operation {kind!r}")
    return result
