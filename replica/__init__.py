"""replica: a live local SQLite replica of Trigger.dev Realtime runs and ElectricSQL shapes.

The public Python API is re-exported here; everything else lives in modules whose names
say what they hold.
"""

from replica._version import __version__
from replica.api import Replica
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
from replica.models import Run
from replica.notify.changes import Change

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
