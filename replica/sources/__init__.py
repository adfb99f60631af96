"""What to subscribe to, and how wire messages become local row changes.

`trigger` builds the Trigger.dev Realtime run feeds as shape definitions; `taskrun` maps raw
`TaskRun` changes to `runs` rows (`replica.tables.RUNS`); `packets` and `superjson` decode
payloads, outputs and metadata and fetch offloaded ones. Nothing here touches SQLite.
"""

from replica.sources.packets import NO_PACKET, PacketFetcher, decode_packet, to_json_text
from replica.sources.taskrun import (
    STATUS_MAP,
    RunMapper,
    iso_timestamp,
    public_status,
    serialized_error,
)
from replica.sources.trigger import (
    ELECTRIC_VERSION,
    SKIPPABLE_COLUMNS,
    TRIGGER_API_VERSION,
    TriggerConfig,
    batch_shape,
    run_shape,
    tag_shape,
)

__all__ = [
    "ELECTRIC_VERSION",
    "NO_PACKET",
    "SKIPPABLE_COLUMNS",
    "STATUS_MAP",
    "TRIGGER_API_VERSION",
    "PacketFetcher",
    "RunMapper",
    "TriggerConfig",
    "batch_shape",
    "decode_packet",
    "iso_timestamp",
    "public_status",
    "run_shape",
    "serialized_error",
    "tag_shape",
    "to_json_text",
]
