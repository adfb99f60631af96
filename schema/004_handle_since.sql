-- replica's local schema, version 4: since when each shape has held its current handle.
-- With `last_up_to_date` it tells when a handle was last used: Trigger.dev forgets a tag
-- feed's created-at window two weeks after that, and a position not used for days is not
-- resumed (see docs/concepts.md, "Resuming after a long stop"). Shapes synced before this
-- version count from when they were registered.
ALTER TABLE _replica_shapes ADD COLUMN handle_since TEXT;
UPDATE _replica_shapes SET handle_since = created_at WHERE handle IS NOT NULL;
