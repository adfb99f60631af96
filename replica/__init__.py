"""replica: a live local SQLite replica of Trigger.dev Realtime runs and ElectricSQL shapes.

The public Python API is re-exported here; everything else lives in modules whose names
say what they hold.
"""

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

__all__ = [
    "DatabaseError",
    "DatabaseLockedError",
    "FastLoopError",
    "InvalidPositionError",
    "MalformedResponseError",
    "MissingHeadersError",
    "ProtocolError",
    "ReplicaError",
    "RetriesExhaustedError",
    "ShapeDefinitionError",
    "StaleResponseError",
    "UpstreamError",
    "ValueParseError",
    "__version__",
]
