"""ElectricSQL's HTTP shape protocol: an async client (its own lean HTTP/1.1, or httpx).

This layer knows the wire (offsets, handles, cursors, headers, messages, value parsing,
retries, 409 handling) and nothing of SQLite or Trigger.dev. See SPEC.md for the state
machine.
"""

from replica.protocol.backoff import Backoff, parse_retry_after
from replica.protocol.materialize import ShapeRows
from replica.protocol.messages import ChangeMessage, ParsedBody, parse_body
from replica.protocol.shape import ShapeDefinition, redact_url
from replica.protocol.state import Position, is_valid_offset
from replica.protocol.stream import Batch, ErrorRecovery, ShapeStream, StreamEvent, StreamOptions

__all__ = [
    "Backoff",
    "Batch",
    "ChangeMessage",
    "ErrorRecovery",
    "ParsedBody",
    "Position",
    "ShapeDefinition",
    "ShapeRows",
    "ShapeStream",
    "StreamEvent",
    "StreamOptions",
    "is_valid_offset",
    "parse_body",
    "parse_retry_after",
    "redact_url",
]
