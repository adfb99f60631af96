-- Snapshot pages made only of inserts are staged as rows of `_replica_staged_<table>` (one
-- per target table, made by the store when first needed) rather than as encoded changes:
-- publishing them is then one set-based statement per page, with no decoding in Python.
-- `columns` (a JSON array of the staged column names) marks such a page; `first_row` and
-- `last_row` are the rowids of its rows in the staged table. For other pages `columns` is
-- NULL and `changes` holds the encoded changes, as before.
ALTER TABLE _replica_pending ADD COLUMN columns TEXT;
ALTER TABLE _replica_pending ADD COLUMN first_row INTEGER;
ALTER TABLE _replica_pending ADD COLUMN last_row INTEGER;
