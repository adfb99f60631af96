-- replica's local schema, version 2: how change consumers are doing, and how far the change
-- log has been pruned. Both are written by replica only (see docs/callbacks.md).

-- A durable consumer's cursor (`last_seq`, from 001) is the last change it acknowledged.
-- `state` is ok, retrying (its callback failed on `failed_seq` and is retried at `retry_at`)
-- or parked (it gave up after `attempts` failures; delivery stops until it is resumed).
-- `owner`/`lease_until` let one listener process at a time deliver to a consumer name.
ALTER TABLE _replica_consumers ADD COLUMN state TEXT NOT NULL DEFAULT 'ok';
ALTER TABLE _replica_consumers ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE _replica_consumers ADD COLUMN failed_seq INTEGER;
ALTER TABLE _replica_consumers ADD COLUMN last_error TEXT;
ALTER TABLE _replica_consumers ADD COLUMN retry_at TEXT;
ALTER TABLE _replica_consumers ADD COLUMN tbl TEXT;         -- the table it follows (NULL: all)
ALTER TABLE _replica_consumers ADD COLUMN filter TEXT;      -- its where filter, as given
ALTER TABLE _replica_consumers ADD COLUMN ops TEXT;         -- JSON array, NULL: every op
ALTER TABLE _replica_consumers ADD COLUMN owner TEXT;       -- host:pid:token of the listener
ALTER TABLE _replica_consumers ADD COLUMN lease_until REAL; -- unix time the lease runs out
ALTER TABLE _replica_consumers ADD COLUMN created_at TEXT;

-- The change log keeps no entry at or below `pruned_through`: a reader whose cursor is
-- below it missed changes and receives a `reset` instead.
CREATE TABLE _replica_log_state (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    pruned_through INTEGER NOT NULL DEFAULT 0,
    pruned_at      TEXT
);
INSERT INTO _replica_log_state (id, pruned_through) VALUES (1, 0);
