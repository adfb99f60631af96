"""`replica demo --db FILE` writes like any other writer: it never removes a database
another process is writing, nor one it did not make, unless told to."""

from __future__ import annotations

import sqlite3

from .conftest import Replica, one_error_line


def _run_count(replica_cli: Replica) -> int:
    return replica_cli.query("SELECT count(*) FROM runs")[0][0]


def test_demo_refuses_a_database_another_process_is_writing(replica_cli: Replica) -> None:
    replica_cli.server.trigger("send-email", {}, tags=["user:1"])
    sync = replica_cli.start("sync", "--tag", "user:1")
    replica_cli.wait_for(lambda: _run_count(replica_cli) == 1, what="the first run synced")
    demo = replica_cli.run("demo", "--db", str(replica_cli.db), "--duration", "0")
    assert demo.returncode == 1
    line = one_error_line(demo)
    assert f"another replica process (pid {sync.pid}) is already writing" in line
    # The running sync still writes into the same file, which lost nothing.
    assert sync.poll() is None
    replica_cli.server.trigger("send-email", {}, tags=["user:1"])
    replica_cli.wait_for(lambda: _run_count(replica_cli) == 2, what="a later run synced")


def test_demo_leaves_a_database_it_did_not_make(replica_cli: Replica) -> None:
    replica_cli.server.trigger("send-email", {}, tags=["user:1"])
    assert replica_cli.run("sync", "--tag", "user:1", "--once").returncode == 0
    before = replica_cli.db.read_bytes()
    demo = replica_cli.run("demo", "--db", str(replica_cli.db), "--duration", "0")
    assert demo.returncode == 1
    assert "was not made by replica demo" in one_error_line(demo)
    assert "--replace" in one_error_line(demo)
    assert replica_cli.db.read_bytes() == before


def test_demo_leaves_a_file_that_is_not_a_database(replica_cli: Replica) -> None:
    notes = replica_cli.cwd / "notes.db"
    notes.write_text("my notes, not a database\n")
    demo = replica_cli.run("demo", "--db", str(notes), "--duration", "0")
    assert demo.returncode == 1
    assert notes.read_text() == "my notes, not a database\n"


def test_demo_replaces_its_own_database_and_others_when_asked(replica_cli: Replica) -> None:
    mine = replica_cli.cwd / "replica-demo.db"
    first = replica_cli.run("demo", "--duration", "0")
    assert first.returncode == 0, first.stderr
    conn = sqlite3.connect(mine)
    conn.execute("CREATE TABLE leftover (x)")  # something only the first demo's file has
    conn.close()
    again = replica_cli.run("demo", "--duration", "0")
    assert again.returncode == 0, again.stderr
    tables = {r[0] for r in sqlite3.connect(mine).execute("SELECT name FROM sqlite_master")}
    assert "leftover" not in tables and "_replica_demo" in tables
    # A database the demo did not make goes only with --replace.
    assert replica_cli.run("sync", "--tag", "user:1", "--once").returncode == 0
    replaced = replica_cli.run("demo", "--db", str(replica_cli.db), "--replace", "--duration", "0")
    assert replaced.returncode == 0, replaced.stderr
    tables = {
        r[0] for r in sqlite3.connect(replica_cli.db).execute("SELECT name FROM sqlite_master")
    }
    assert "_replica_demo" in tables
