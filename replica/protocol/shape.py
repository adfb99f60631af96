"""What a shape is on the wire: its URL, query parameters and request headers.

A `ShapeDefinition` turns user input (table, where, params, columns, ...) into the exact,
sorted query parameters Electric expects, and refuses parameters the protocol reserves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from replica.errors import ShapeDefinitionError

#: Query parameters owned by the protocol loop; a shape may not set them.
RESERVED_PARAMS = frozenset(
    {
        "offset",
        "handle",
        "live",
        "cursor",
        "cache-buster",
        "expired_handle",
        "live_sse",
        "experimental_live_sse",
    }
)
_RESERVED_PREFIXES = ("subset__",)

#: Query parameters whose values are secrets and must never be logged.
SECRET_PARAMS = frozenset({"secret", "api_secret", "source_secret", "token", "access_token"})

_SECRET_MARKS = tuple(f"{name}=" for name in SECRET_PARAMS)

ParamValue = str | int | float | bool


def _param_text(name: str, value: object) -> str:
    # Booleans go out lowercase: the server treats anything but the literal `false` as true.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ShapeDefinitionError(
        f"query parameter {name!r} must be a string, number or boolean, got {type(value).__name__}"
    )


def quote_identifier(name: str) -> str:
    """Quote a column name the way Postgres does, doubling embedded quotes."""
    if not name:
        raise ShapeDefinitionError("a column name cannot be empty")
    return '"' + name.replace('"', '""') + '"'


def _where_params(params: Sequence[Any] | Mapping[Any, Any] | None) -> dict[str, str]:
    """`params` as a list (1-based) or a mapping of positions, checked to be 1..n."""
    if params is None:
        return {}
    if isinstance(params, Mapping):
        items: dict[int, Any] = {}
        for position, value in params.items():
            try:
                index = int(position)
            except (TypeError, ValueError):
                raise ShapeDefinitionError(
                    f"where params must be numbered 1..n, got the key {position!r}"
                ) from None
            items[index] = value
    elif isinstance(params, str | bytes):
        raise ShapeDefinitionError("where params must be a list or a mapping, not a string")
    else:
        items = {i: value for i, value in enumerate(params, start=1)}
    if sorted(items) != list(range(1, len(items) + 1)):
        raise ShapeDefinitionError(
            f"where params must be numbered sequentially from 1, got {sorted(items)}"
        )
    return {f"params[{i}]": _param_text(f"params[{i}]", v) for i, v in sorted(items.items())}


@dataclass(frozen=True)
class ShapeDefinition:
    """A shape to follow: where it is served and which rows and columns it holds.

    `url` is the full endpoint (`http://host:3000/v1/shape`, or a Trigger.dev route such as
    `https://api.trigger.dev/realtime/v1/runs`). Trigger.dev routes take their own query
    parameters (`tags`, `createdAt`, `skipColumns`) through `params`; plain Electric shapes use
    `table`, `where`, `where_params`, `columns`, `replica` and `log`. `headers` go out on every
    request (e.g. `Authorization`).
    """

    url: str
    table: str | None = None
    where: str | None = None
    where_params: Sequence[Any] | Mapping[Any, Any] | None = None
    columns: Sequence[str] | None = None
    replica: Literal["default", "full"] | None = None
    log: Literal["full", "changes_only"] | None = None
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        # Headers carry tokens and params may carry secrets: show neither.
        return f"ShapeDefinition({self.key!r}, headers=[{', '.join(sorted(self.headers))}])"

    def __post_init__(self) -> None:
        # Build once so a bad definition fails at construction, not at the first request.
        self.query_params()

    def query_params(self) -> dict[str, str]:
        """The shape's own query parameters (no protocol state), in sorted order."""
        scheme, netloc, _, query, _ = urlsplit(self.url)
        if scheme not in ("http", "https") or not netloc:
            raise ShapeDefinitionError(f"shape URL must be an http(s) URL, got {self.url!r}")
        if query:
            raise ShapeDefinitionError(
                "put query parameters in ShapeDefinition.params, not in the URL"
            )
        out: dict[str, str] = {}
        for name, value in self.params.items():
            if name in RESERVED_PARAMS or name.startswith(_RESERVED_PREFIXES):
                raise ShapeDefinitionError(
                    f"query parameter {name!r} is reserved for the protocol and cannot be set"
                )
            if name.startswith("params[") or name in ("table", "where", "columns"):
                raise ShapeDefinitionError(
                    f"set {name!r} through the matching ShapeDefinition field, not params"
                )
            out[name] = _param_text(name, value)
        if self.table is not None:
            if not self.table.strip():
                raise ShapeDefinitionError("table cannot be empty")
            out["table"] = self.table
        if self.where is not None:
            if not self.where.strip():
                raise ShapeDefinitionError("where cannot be empty; leave it out instead")
            out["where"] = self.where
        out.update(_where_params(self.where_params))
        if self.where_params and self.where is None:
            raise ShapeDefinitionError("where_params given without a where clause")
        if self.columns is not None:
            if isinstance(self.columns, str):
                raise ShapeDefinitionError("columns must be a list of names, not one string")
            if not self.columns:
                raise ShapeDefinitionError("columns cannot be an empty list")
            out["columns"] = ",".join(quote_identifier(c) for c in self.columns)
        if self.replica is not None:
            if self.replica not in ("default", "full"):
                raise ShapeDefinitionError(
                    f"replica must be 'default' or 'full', got {self.replica!r}"
                )
            out["replica"] = self.replica
        if self.log is not None:
            if self.log not in ("full", "changes_only"):
                raise ShapeDefinitionError(
                    f"log must be 'full' or 'changes_only', got {self.log!r}"
                )
            out["log"] = self.log
        return dict(sorted(out.items()))

    def with_updates(
        self,
        params: Mapping[str, ParamValue] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ShapeDefinition:
        """A copy with extra query parameters and headers merged in (used by error hooks)."""
        return replace(
            self,
            params={**self.params, **(params or {})},
            headers={**self.headers, **(headers or {})},
        )

    @property
    def key(self) -> str:
        """A stable identity: the URL with the shape's sorted parameters, never protocol
        state, and never a secret (it is stored and shown)."""
        scheme, netloc, path, _, _ = urlsplit(self.url)
        query = "&".join(
            f"{k}={'***' if k in SECRET_PARAMS else v}" for k, v in self.query_params().items()
        )
        return urlunsplit((scheme, netloc, path, query, ""))

    @property
    def fingerprint(self) -> str:
        """A short hash of `key`, handy as a file-safe identifier."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:16]


def redact_url(url: str) -> str:
    """The URL with secret query parameters replaced by `***`, safe for logs and errors."""
    if not any(mark in url for mark in _SECRET_MARKS):  # the common case, made cheap
        return url
    scheme, netloc, path, query, fragment = urlsplit(url)
    if not query:
        return url
    parts = []
    for part in query.split("&"):
        name = part.split("=", 1)[0]
        parts.append(f"{name}=***" if name in SECRET_PARAMS else part)
    return urlunsplit((scheme, netloc, path, "&".join(parts), fragment))
