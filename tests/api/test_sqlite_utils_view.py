"""`Replica.sqlite_utils()`: sqlite-utils' Python API on a real replica, for reading only.
Every kind of write fails with a clear error and leaves the file as it was."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

import replica
from replica.store import Store
from tests.notify.helpers import Writer, run
from tests.support.replicas import sample_replica


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return sample_replica(tmp_path / "replica.db")


@pytest.fixture
def db(path: Path) -> Iterator[replica.Replica]:
    with replica.Replica(path) as opened:
        yield opened


@pytest.fixture
def view(db: replica.Replica) -> Iterator[sqlite_utils.Database]:
    with db.sqlite_utils() as opened:
        yield opened


def fingerprint(path: Path) -> dict[str, str]:
    """The database file and its WAL, byte for byte (the -shm index is readers' scratch)."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (path, path.with_name(path.name + "-wal"))
        if p.exists()
    }


def test_reads_work(view: sqlite_utils.Database) -> None:
    assert isinstance(view, sqlite_utils.Database)
    assert {"runs", "run_tags", "run_history"} <= set(view.table_names())
    runs = view["runs"]
    assert isinstance(runs, sqlite_utils.db.Table)
    assert runs.count == 3
    assert runs.pks == ["id"]
    assert runs.columns_dict["payload"] is str
    assert [r["id"] for r in runs.rows_where("status = ?", ["FAILED"])] == ["run_2"]
    assert runs.get("run_3")["task_identifier"] == "résumé"
    assert [i.columns for i in runs.indexes if i.name == "runs_created_at"] == [["created_at"]]
    rows = view.query("select id from runs where payload ->> '$.to' = ?", ["ada@example.com"])
    assert list(rows) == [{"id": "run_1"}]
    assert view.execute("select count(*) from run_tags").fetchone() == (3,)
    assert view.journal_mode == "wal"
    assert "CREATE TABLE" in view.schema


def test_it_sees_later_commits(path: Path, view: sqlite_utils.Database) -> None:
    assert view["runs"].count == 3
    with Store(path) as store:
        Writer(store).commit(run(4))
    assert view["runs"].count == 4
    assert list(view.query("select id from runs where id = 'run_4'")) == [{"id": "run_4"}]


RUN = {"id": "run_9", "task_identifier": "t", "status": "QUEUED"}

WRITES: dict[str, Callable[[sqlite_utils.Database], Any]] = {
    "insert": lambda v: v["runs"].insert(RUN),
    "insert_all": lambda v: v["runs"].insert_all([RUN, {**RUN, "id": "run_10"}]),
    "upsert": lambda v: v["runs"].upsert({"id": "run_1", "status": "CRASHED"}, pk="id"),
    "update": lambda v: v["runs"].update("run_1", {"status": "CRASHED"}),
    "delete": lambda v: v["runs"].delete("run_1"),
    "delete_where": lambda v: v["runs"].delete_where(),
    "create a table": lambda v: v["notes"].insert({"text": "hello"}),
    "add_column": lambda v: v["runs"].add_column("note", str),
    "create_index": lambda v: v["runs"].create_index(["status"]),
    "transform": lambda v: v["runs"].transform(drop={"ttl"}),
    "enable_fts": lambda v: v["runs"].enable_fts(["task_identifier"], create_triggers=True),
    "drop": lambda v: v["runs"].drop(),
    "execute": lambda v: v.execute("delete from runs"),
    "executescript": lambda v: v.executescript("create table t (a); insert into t values (1);"),
    "query returning": lambda v: list(v.query("delete from runs returning id")),
    "temp table": lambda v: v.execute("create temp table t (a)"),
    "attach": lambda v: v.attach("other", "other.db"),
    "set a pragma": lambda v: v.execute("pragma query_only = 0"),
    "disable_wal": lambda v: v.disable_wal(),
    "vacuum": lambda v: v.vacuum(),
}


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_every_kind_of_write_fails_clearly_and_changes_nothing(
    path: Path,
    view: sqlite_utils.Database,
    write: Callable[[sqlite_utils.Database], Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # where `attach` would create other.db
    before = fingerprint(path)
    with pytest.raises(replica.QueryRefusedError) as refused:
        write(view)
    error = refused.value
    assert isinstance(error, sqlite3.OperationalError)  # what sqlite-utils code catches
    assert str(error).startswith(f"{path} is read-only through this sqlite-utils view")
    assert "change log" in error.hint
    assert fingerprint(path) == before
    assert {p.name for p in tmp_path.iterdir()} - {"replica.db-shm"} == set(before)  # no other.db
    # The view is still usable: no transaction left open, the data as it was.
    assert not view.conn.in_transaction
    assert view["runs"].count == 3
    assert "note" not in view["runs"].columns_dict


def test_the_raw_connection_is_read_only_too(path: Path, view: sqlite_utils.Database) -> None:
    before = fingerprint(path)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        view.conn.execute("delete from runs")
    assert fingerprint(path) == before


def test_with_closes_the_connection(db: replica.Replica) -> None:
    with db.sqlite_utils() as view:
        assert view["runs"].count == 3
    with pytest.raises(sqlite3.ProgrammingError):
        view.execute("select 1")
    second = db.sqlite_utils()  # each call opens its own connection
    assert second["runs"].count == 3
    second.close()
    assert db.query("select count(*) as n from runs") == [{"n": 3}]


def test_sqlite_utils_loads_only_when_the_view_is_asked_for(path: Path) -> None:
    script = (
        "import sys, replica\n"
        f"db = replica.Replica({str(path)!r})\n"
        "db.query('select count(*) from runs')\n"
        "print('sqlite_utils' in sys.modules)\n"
        "db.sqlite_utils().close()\n"
        "print('sqlite_utils' in sys.modules)\n"
        "db.close()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]
