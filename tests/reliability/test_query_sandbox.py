"""`replica query` (and `Replica.query`) cannot write, attach another file or load an
extension, however the SQL is written, and nothing on disk changes when it tries.

tests/cli/test_sync_cli.py checks the plain cases (DELETE, UPDATE, ATTACH,
load_extension, a pragma write, CREATE TABLE); these are the roundabout ones.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from replica import Replica
from replica.errors import DatabaseError, QueryRefusedError
from replica.store import Store
from replica.tables import RowChange

from .support import record, replica_command

ATTEMPTS = [
    "INSERT INTO runs (id, task_identifier, status) VALUES ('x', 't', 'QUEUED')",
    "WITH gone AS (SELECT id FROM runs) DELETE FROM runs WHERE id IN gone",
    "INSERT INTO runs SELECT * FROM runs RETURNING id",
    "REPLACE INTO _replica_consumers (name, last_seq) VALUES ('x', 1)",
    "UPDATE _replica_shapes SET handle = 'x'",
    "DROP TABLE runs",
    "DROP TRIGGER runs_derive_insert",
    "ALTER TABLE runs ADD COLUMN x",
    "CREATE INDEX x ON runs (status)",
    "CREATE TEMP TABLE scratch (x)",
    "CREATE TEMP VIEW v AS SELECT 1",
    "CREATE TEMP TRIGGER t AFTER INSERT ON runs BEGIN SELECT 1; END",
    "CREATE VIRTUAL TABLE v USING fts5(x)",
    "REINDEX",
    "ANALYZE",
    "VACUUM",
    "VACUUM INTO 'copy.db'",
    "ATTACH DATABASE 'other.db' AS other",
    "ATTACH 'file:other.db?mode=rwc' AS other",
    "ATTACH ':memory:' AS scratch",
    "DETACH DATABASE main",
    "SELECT load_extension('libsqlitefunctions')",
    "SELECT load_extension('/tmp/evil.so', 'sqlite3_extension_init')",
    "PRAGMA query_only = 0",
    "PRAGMA writable_schema = 1",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA user_version = 7",
    "PRAGMA wal_checkpoint(TRUNCATE)",
    "SELECT * FROM pragma_query_only(0)",
    "SELECT * FROM pragma_journal_mode('delete')",
    "SAVEPOINT x",
    "BEGIN IMMEDIATE",
    "SELECT 1; DELETE FROM runs",
]


@pytest.fixture
def replica_db(tmp_path: Path) -> Path:
    db = tmp_path / "replica.db"
    with Store(db) as store:
        shape = store.register_shape("tag:a", kind="tag", target="runs").id
        store.apply(
            shape,
            [
                RowChange(
                    "insert",
                    "int_1",
                    {"id": "run_1", "task_identifier": "t", "status": "QUEUED", "tags": "[]"},
                )
            ],
            position={"handle": "h", "offset": "1_0"},
            up_to_date=True,
        )
    return db


def files(directory: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
        if path.is_file() and not path.name.endswith(("-wal", "-shm"))
    }


def test_the_cli_refuses_every_roundabout_write(replica_db: Path) -> None:
    directory = replica_db.parent
    before = files(directory)
    env = {**os.environ, "REPLICA_DB": str(replica_db)}
    for sql in ATTEMPTS:
        result = subprocess.run(
            replica_command("query", sql), cwd=directory, env=env, capture_output=True, text=True
        )
        assert result.returncode == 1, (sql, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        line = result.stderr.strip().splitlines()[-1]
        assert line.startswith("Error: "), line
        record("query sandbox", cli_attempts_refused=1)
    assert files(directory) == before  # no copy.db, no other.db, the replica unchanged


def test_the_python_api_refuses_them_too(replica_db: Path) -> None:
    before = files(replica_db.parent)
    with Replica(replica_db) as db:
        for sql in ATTEMPTS:
            with pytest.raises((QueryRefusedError, DatabaseError)):
                db.query(sql)
            record("query sandbox", api_attempts_refused=1)
        assert db.query("SELECT count(*) AS n FROM runs") == [{"n": 1}]
    assert files(replica_db.parent) == before


@pytest.mark.parametrize("name", ["we#ird.db", "what?.db", "per%20cent.db", "sp ace.db"])
def test_a_path_with_uri_characters_opens_that_file_read_only(tmp_path: Path, name: str) -> None:
    # The read-only connection is a `file:` URI: an unescaped `#` or `?` used to cut the
    # path short and open (and create) another file, read-write.
    db = tmp_path / name
    with Store(db) as store:
        store.register_shape("tag:a", kind="tag", target="runs")
    before = {p.name for p in tmp_path.iterdir()}
    result = subprocess.run(
        replica_command("query", "select count(*) from _replica_shapes", "--csv", "--db", str(db)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["count(*)", "1"]
    refused = subprocess.run(
        replica_command("query", "delete from _replica_shapes", "--db", str(db)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1
    after = {p.name for p in tmp_path.iterdir()}
    assert after - before <= {f"{name}-wal", f"{name}-shm"}
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM _replica_shapes").fetchone() == (1,)
    conn.close()


@pytest.mark.parametrize("sql", ["SAVEPOINT x", "BEGIN", "BEGIN DEFERRED"])
def test_a_query_cannot_pin_the_shared_reader_to_an_old_snapshot(
    replica_db: Path, sql: str
) -> None:
    # `Replica.query` reuses one connection: a transaction left open by a query would keep
    # every later query of that Replica on the snapshot it saw (and the WAL from being
    # checkpointed), silently.
    with Replica(replica_db) as db:
        with pytest.raises(QueryRefusedError):
            db.query(sql)
        assert db.query("SELECT count(*) AS n FROM runs") == [{"n": 1}]
        with Store(replica_db) as store:
            shape = store.shape("tag:a")
            assert shape is not None
            store.apply(
                shape.id,
                [
                    RowChange(
                        "insert",
                        "int_2",
                        {"id": "run_2", "task_identifier": "t", "status": "QUEUED"},
                    )
                ],
                position={"handle": "h", "offset": "2_0"},
                up_to_date=True,
            )
        assert db.query("SELECT count(*) AS n FROM runs") == [{"n": 2}]
