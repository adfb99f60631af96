"""replica: a live local SQLite replica of Trigger.dev Realtime runs and ElectricSQL shapes.

The public Python API is re-exported here; everything else lives in modules whose names
say what they hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from replica._version import __version__
from replica.errors import (
    DatabaseError,
    DatabaseLockedError,
    FastLoopError,
    InvalidPositionError,
    MalformedResponseError,
    MissingHeadersError,
    ProtocolError,
    ReplicaError,
    RetriesExhaustedError,
    ShapeDefinitionError,
    StaleResponseError,
    UpstreamError,
    ValueParseError,
)

if TYPE_CHECKING:
    from replica.api import Replica
    from replica.models import Run
    from replica.notify.changes import Change

# The Python API pulls in pydantic; the command line mostly does not need it, so these
# names are imported on first use.
_LAZY = {"Replica": "replica.api", "Run": "replica.models", "Change": "replica.notify.changes"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'replica' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

__all__ = [
    "Change",
    "DatabaseError",
    "DatabaseLockedError",
    "FastLoopError",
    "InvalidPositionError",
    "MalformedResponseError",
    "MissingHeadersError",
    "ProtocolError",
    "Replica",
    "ReplicaError",
    "RetriesExhaustedError",
    "Run",
    "ShapeDefinitionError",
    "StaleResponseError",
    "UpstreamError",
    "ValueParseError",
    "__version__",
]
