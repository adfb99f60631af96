-- replica's local schema, version 1.
--
-- `runs`, `run_tags` and `run_history` are for users (sqlite3, Datasette, any language).
-- Tables whose names start with `_replica_` are replica's own bookkeeping: reserved, read
-- them if you like, never write them. Plain Electric shapes get tables of their own, created
-- from the shape's schema when it is first synced.

-- One row per Trigger.dev run, named after the public run object in snake_case. JSON
-- columns hold JSON text; timestamps are ISO-8601 UTC `YYYY-MM-DDTHH:MM:SS.sssZ`.
CREATE TABLE runs (
    id                 TEXT PRIMARY KEY,          -- public run id (run_...)
    task_identifier    TEXT NOT NULL,
    status             TEXT NOT NULL,             -- public RunStatus (QUEUED, EXECUTING, ...)
    payload            TEXT,                      -- JSON
    output             TEXT,                      -- JSON
    metadata           TEXT,                      -- JSON
    error              TEXT,                      -- JSON {message, name?, stackTrace?}
    tags               TEXT NOT NULL DEFAULT '[]',-- JSON array of strings
    number             INTEGER,
    is_test            INTEGER,                   -- 0/1
    duration_ms        INTEGER,
    cost_in_cents      REAL,
    base_cost_in_cents REAL,
    idempotency_key    TEXT,
    ttl                TEXT,
    created_at         TEXT,
    updated_at         TEXT,
    started_at         TEXT,
    finished_at        TEXT,                      -- set once the run is finished
    queued_at          TEXT,
    delayed_until      TEXT,
    expired_at         TEXT,
    detached_at        TEXT,                      -- NULL while a subscribed shape holds the run
    internal_id        TEXT NOT NULL UNIQUE,      -- TaskRun.id, what the upstream keys on
    db_status          TEXT,                      -- raw TaskRunStatus (COMPLETED_WITH_ERRORS, ...)
    realtime_streams   TEXT NOT NULL DEFAULT '[]',-- JSON array of stream keys
    payload_type       TEXT,                      -- packet content types as received
    output_type        TEXT,
    metadata_type      TEXT,
    payload_ref        TEXT,                      -- object-store path of a payload not fetched
    output_ref         TEXT
);
CREATE INDEX runs_status ON runs (status);
CREATE INDEX runs_task_identifier ON runs (task_identifier);
CREATE INDEX runs_created_at ON runs (created_at);

-- Tags of each run, for indexed lookups: `SELECT run_id FROM run_tags WHERE tag = ?`.
CREATE TABLE run_tags (
    tag    TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (tag, run_id)
) WITHOUT ROWID;
CREATE INDEX run_tags_run_id ON run_tags (run_id);

-- Every status a run was seen in, with the run's updated_at at that moment (`at`).
CREATE TABLE run_history (
    id              INTEGER PRIMARY KEY,
    run_id          TEXT NOT NULL,
    status          TEXT NOT NULL,
    previous_status TEXT,
    at              TEXT,
    observed_at     TEXT NOT NULL
);
CREATE INDEX run_history_run_id ON run_history (run_id, id);

-- run_tags and run_history follow runs, whoever writes it.
CREATE TRIGGER runs_derive_insert AFTER INSERT ON runs BEGIN
    INSERT OR IGNORE INTO run_tags (tag, run_id)
        SELECT value, NEW.id FROM json_each(NEW.tags) WHERE type = 'text';
    INSERT INTO run_history (run_id, status, previous_status, at, observed_at)
        VALUES (NEW.id, NEW.status, NULL, NEW.updated_at,
                strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
END;
CREATE TRIGGER runs_derive_tags AFTER UPDATE OF tags ON runs
WHEN NEW.tags IS NOT OLD.tags BEGIN
    DELETE FROM run_tags WHERE run_id = OLD.id;
    INSERT OR IGNORE INTO run_tags (tag, run_id)
        SELECT value, NEW.id FROM json_each(NEW.tags) WHERE type = 'text';
END;
CREATE TRIGGER runs_derive_status AFTER UPDATE OF status ON runs
WHEN NEW.status IS NOT OLD.status BEGIN
    INSERT INTO run_history (run_id, status, previous_status, at, observed_at)
        VALUES (NEW.id, NEW.status, OLD.status, NEW.updated_at,
                strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
END;
CREATE TRIGGER runs_derive_delete AFTER DELETE ON runs BEGIN
    DELETE FROM run_tags WHERE run_id = OLD.id;
END;

-- Subscribed shapes: where each stands (position, committed with its data) and how it is.
CREATE TABLE _replica_shapes (
    id              INTEGER PRIMARY KEY,
    key             TEXT NOT NULL UNIQUE,         -- stable identity of the shape
    kind            TEXT NOT NULL,                -- tag, run, batch, electric
    target          TEXT NOT NULL,                -- local table the shape fills
    definition      TEXT NOT NULL DEFAULT '{}',   -- JSON, without secrets
    handle          TEXT,
    "offset"        TEXT NOT NULL DEFAULT '-1',
    position        TEXT,                         -- full resume position (JSON)
    phase           TEXT NOT NULL DEFAULT 'snapshot' CHECK (phase IN ('snapshot', 'live')),
    generation      INTEGER NOT NULL DEFAULT 0,   -- bumped by every refetch
    state           TEXT NOT NULL DEFAULT 'initial',
    rows            INTEGER NOT NULL DEFAULT 0,
    last_up_to_date TEXT,
    last_error      TEXT,
    next_retry_at   TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

-- Which shapes hold which rows: a row stays until the last shape lets it go.
CREATE TABLE _replica_members (
    shape_id   INTEGER NOT NULL,
    tbl        TEXT NOT NULL,
    key        NOT NULL,                           -- the table's key column value
    generation INTEGER NOT NULL,
    PRIMARY KEY (shape_id, tbl, key)
) WITHOUT ROWID;
CREATE INDEX _replica_members_row ON _replica_members (tbl, key);

-- Pages received but not yet published (a snapshot in progress, or a live transaction
-- split across responses): committed with the position, applied at the next up-to-date.
CREATE TABLE _replica_pending (
    id       INTEGER PRIMARY KEY,
    shape_id INTEGER NOT NULL,
    changes  BLOB NOT NULL
);
CREATE INDEX _replica_pending_shape ON _replica_pending (shape_id, id);

-- Every committed change to a replicated row, in commit order. `seq` is never reused.
-- `changed` is a JSON array of column names; `old` a JSON object of their previous values
-- (the whole previous row for a delete).
CREATE TABLE _replica_changes (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl          TEXT NOT NULL,
    key          TEXT NOT NULL,                    -- primary key (JSON array if composite)
    op           TEXT NOT NULL CHECK (op IN ('insert', 'update', 'delete')),
    shape_id     INTEGER,
    changed      TEXT,
    old          TEXT,
    committed_at TEXT NOT NULL
);
CREATE INDEX _replica_changes_row ON _replica_changes (tbl, key, seq);

-- Durable cursors of named change consumers.
CREATE TABLE _replica_consumers (
    name       TEXT PRIMARY KEY,
    last_seq   INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT
);

-- Specs of the tables created for plain Electric shapes (JSON), to rebuild their triggers.
CREATE TABLE _replica_tables (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL
);
