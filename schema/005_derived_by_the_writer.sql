-- replica's local schema, version 5: run_tags and run_history are derived by replica's own
-- writer (TEMP triggers on its connection, and set-based statements after a bulk upsert),
-- no longer by triggers stored in the database. Only replica writes `runs`; deriving a page
-- of thousands of runs in one sorted statement costs a fraction of a trigger per row.
DROP TRIGGER IF EXISTS runs_derive_insert;
DROP TRIGGER IF EXISTS runs_derive_tags;
DROP TRIGGER IF EXISTS runs_derive_status;
DROP TRIGGER IF EXISTS runs_derive_delete;
-- A run's tags are found from `runs.tags`; deleting them by (tag, run_id) needs no index on
-- run_id, whose random inserts cost a third of deriving a snapshot's tags.
DROP INDEX IF EXISTS run_tags_run_id;
