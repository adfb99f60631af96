"""replica: a live local SQLite replica of Trigger.dev Realtime runs and ElectricSQL shapes.

The public Python API is re-exported here; everything else lives in modules whose names
say what they hold.
"""

import importlib as _importlib
import typing as _typing

from replica._version import __version__
from replica.errors import (
    DatabaseError,
    DatabaseLockedError,
    FastLoopError,
    InvalidPositionError,
    MalformedResponseError,
    MissingHeadersError,
    ProtocolError,
    QueryRefusedError,
    ReplicaError,
    RetriesExhaustedError,
    ShapeDefinitionError,
    StaleResponseError,
    UpstreamError,
    ValueParseError,
)

if _typing.TYPE_CHECKING:
    from replica.api import Replica
    from replica.feeds import Feed, batch, electric, run_feed, tag
    from replica.models import Run
    from replica.notify.changes import Change

# The Python API pulls in pydantic; the command line mostly does not need it, so these
# names are imported on first use.
_LAZY = {
    "Change": "replica.notify.changes",
    "Feed": "replica.feeds",
    "Replica": "replica.api",
    "Run": "replica.models",
    "batch": "replica.feeds",
    "electric": "replica.feeds",
    "run_feed": "replica.feeds",
    "tag": "replica.feeds",
}


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'replica' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Change",
    "DatabaseError",
    "DatabaseLockedError",
    "FastLoopError",
    "Feed",
    "InvalidPositionError",
    "MalformedResponseError",
    "MissingHeadersError",
    "ProtocolError",
    "QueryRefusedError",
    "Replica",
    "ReplicaError",
    "RetriesExhaustedError",
    "Run",
    "ShapeDefinitionError",
    "StaleResponseError",
    "UpstreamError",
    "ValueParseError",
    "__version__",
    "batch",
    "electric",
    "run_feed",
    "tag",
]
