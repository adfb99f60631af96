"""`replica sync`, `status`, `query`, `reset` end to end, in subprocesses, against the emulator."""

from __future__ import annotations

import json
import signal
import textwrap

import pytest

from replica.devserver import DevServer

from .conftest import Replica, one_error_line


def trigger_runs(server: DevServer, tag: str, count: int, **options: object) -> list[str]:
    return [server.trigger("send-email", {"n": i}, tags=[tag], **options) for i in range(count)]


def test_sync_once_copies_a_tag_and_exits_0(replica_cli: Replica) -> None:
    server = replica_cli.server
    wanted = set(trigger_runs(server, "user:1", 5))
    trigger_runs(server, "user:2", 3)
    result = replica_cli.run("sync", "--tag", "user:1", "--once")
    assert result.returncode == 0, result.stderr
    got = {r[0] for r in replica_cli.query("SELECT id FROM runs")}
    assert got == wanted
    assert "up to date, 5 rows" in result.stderr


def test_sync_once_runs_and_electric_shapes_together(replica_cli: Replica) -> None:
    server = replica_cli.server
    server.define_table("items", {"id": "int4", "title": "text"}, primary_key="id")
    server.insert("items", {"id": 1, "title": "a"}, {"id": 2, "title": "b"})
    run_id = server.trigger("render-video", "intro.mp4", tags=["x"])
    result = replica_cli.run(
        "sync",
        "--run",
        run_id,
        "--electric",
        server.url,
        "--table",
        "items",
        "--where",
        "id > $1",
        "--param",
        "1",
        "--once",
    )
    assert result.returncode == 0, result.stderr
    assert replica_cli.query("SELECT id, title FROM items") == [(2, "b")]
    assert replica_cli.query("SELECT id, payload FROM runs") == [(run_id, '"intro.mp4"')]


def test_sync_once_exits_1_when_a_subscription_fails(replica_cli: Replica) -> None:
    trigger_runs(replica_cli.server, "ok", 1)
    result = replica_cli.run("sync", "--tag", "ok", "--run", "run_doesnotexist00000", "--once")
    assert result.returncode == 1
    line = one_error_line(result)
    assert "failed" in line
    status = json.loads(replica_cli.run("status", "--json").stdout)
    states = {s["shape"]: s["state"] for s in status}
    # No sync runs any more: the healthy shape shows as stopped, the failed one as failed.
    assert states == {"tag ok": "stopped", "run run_doesnotexist00000": "failed"}
    assert any("404" in (s["last_error"] or "") for s in status)


def test_sigterm_stops_cleanly_and_a_restart_resumes(replica_cli: Replica) -> None:
    server = replica_cli.server
    first = trigger_runs(server, "t", 3)
    proc = replica_cli.start("sync", "--tag", "t")
    replica_cli.wait_for(
        lambda: len(replica_cli.query("SELECT id FROM runs")) == 3, what="the first snapshot"
    )
    server.set_status(first[0], "EXECUTING")
    replica_cli.wait_for(
        lambda: (
            replica_cli.query("SELECT status FROM runs WHERE id = ?", (first[0],))
            == [("EXECUTING",)]
        ),
        what="a live update",
    )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, proc.stderr.read() if proc.stderr else ""
    assert not (replica_cli.db.parent / "replica.db.lock").exists()
    log_before = replica_cli.query("SELECT seq, key, op FROM _replica_changes ORDER BY seq")
    # Changes while nobody syncs, then a restart picks up exactly those.
    server.set_status(first[1], "EXECUTING")
    late = server.trigger("send-email", {"late": True}, tags=["t"])
    result = replica_cli.run("sync", "--tag", "t", "--once")
    assert result.returncode == 0, result.stderr
    log_after = replica_cli.query("SELECT seq, key, op FROM _replica_changes ORDER BY seq")
    assert log_after[: len(log_before)] == log_before
    new = [(key, op) for _, key, op in log_after[len(log_before) :]]
    assert sorted(new) == sorted([(first[1], "update"), (late, "insert")])


def test_a_second_sync_on_the_same_file_is_refused(replica_cli: Replica) -> None:
    trigger_runs(replica_cli.server, "t", 1)
    proc = replica_cli.start("sync", "--tag", "t")
    replica_cli.wait_for(lambda: replica_cli.query("SELECT count(*) FROM runs") == [(1,)])
    result = replica_cli.run("sync", "--tag", "t", "--once")
    assert result.returncode == 1
    assert f"pid {proc.pid}" in one_error_line(result)


def test_reset_refetches_without_new_changes(replica_cli: Replica) -> None:
    trigger_runs(replica_cli.server, "t", 4)
    assert replica_cli.run("sync", "--tag", "t", "--once").returncode == 0
    changes = replica_cli.query("SELECT count(*) FROM _replica_changes")
    result = replica_cli.run("reset", "--all")
    assert result.returncode == 0
    assert "reset 1 shape" in result.stdout
    status = json.loads(replica_cli.run("status", "--json").stdout)
    assert (status[0]["offset"], status[0]["state"]) == ("-1", "stopped")
    assert replica_cli.run("sync", "--tag", "t", "--once").returncode == 0
    assert replica_cli.query("SELECT count(*) FROM _replica_changes") == changes
    assert replica_cli.query("SELECT count(*) FROM runs") == [(4,)]
    by_label = replica_cli.run("reset", "--shape", "tag t")
    assert by_label.returncode == 0, by_label.stderr
    unknown = replica_cli.run("reset", "--shape", "tag nope")
    assert unknown.returncode == 1
    assert "known shapes: 'tag t'" in one_error_line(unknown)


def test_query_prints_tables_json_and_csv_and_refuses_writes(replica_cli: Replica) -> None:
    run_id = trigger_runs(replica_cli.server, "t", 1)[0]
    replica_cli.run("sync", "--tag", "t", "--once")
    table = replica_cli.run("query", "select id, status from runs")
    assert table.returncode == 0
    assert run_id in table.stdout and "status" in table.stdout.splitlines()[0]
    as_json = json.loads(replica_cli.run("query", "select id from runs", "--json").stdout)
    assert as_json == [{"id": run_id}]
    as_csv = replica_cli.run("query", "select id from runs", "--csv").stdout
    assert as_csv.splitlines() == ["id", run_id]
    for sql in (
        "delete from runs",
        "update runs set status = 'X'",
        "attach database 'other.db' as other",
        "select load_extension('x')",
        "pragma journal_mode = delete",
        "create table t (x)",
    ):
        refused = replica_cli.run("query", sql)
        assert refused.returncode == 1, sql
        assert "read-only" in one_error_line(refused) or "refused" in refused.stderr
    assert replica_cli.query("SELECT count(*) FROM runs") == [(1,)]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("sync",), "nothing to sync"),
        (("sync", "--electric", "http://localhost:1"), "--electric and --table"),
        (("sync", "--electric", "http://x", "--table", "t", "--where", "id >"), "> needs a value"),
        (("sync", "--electric", "http://x", "--table", "t", "--where", "id > $1"), "parameter"),
        (("sync", "--tag", "a", "--created-at", "soon"), "created_at"),
        (("sync", "--run", "not-a-run"), "run_"),
        (("sync", "--tag", "a", "--skip-column", "updatedAt"), "updatedAt"),
        (("sync", "--replica", "partial", "--electric", "http://x", "--table", "t"), "partial"),
        (("sync", "--electric", "http://x/v1/shape?secret=s", "--table", "t"), "ELECTRIC_SECRET"),
        (("reset",), "--shape KEY or --all"),
        (("query", "select 1", "--json", "--csv"), "--json and --csv"),
        (("status", "--bogus"), "--bogus"),
    ],
)
def test_usage_errors_exit_2_with_one_error_line(
    replica_cli: Replica, args: tuple[str, ...], needle: str
) -> None:
    result = replica_cli.run(*args)
    assert result.returncode == 2, result.stderr
    assert needle in one_error_line(result)
    assert not replica_cli.db.exists()  # nothing written


def test_missing_token_is_a_usage_error(replica_cli: Replica) -> None:
    env = {k: v for k, v in replica_cli.env.items() if k != "TRIGGER_SECRET_KEY"}
    result = replica_cli.run("sync", "--tag", "a", env=env)
    assert result.returncode == 2
    assert "TRIGGER_SECRET_KEY" in one_error_line(result)


def test_runtime_errors_exit_1(replica_cli: Replica) -> None:
    missing = replica_cli.run("status", "--db", str(replica_cli.cwd / "nope.db"))
    assert missing.returncode == 1
    assert "does not exist" in one_error_line(missing)
    bad_sql = replica_cli.run("query", "select * from nope", "--db", str(replica_cli.db))
    assert bad_sql.returncode == 1


def test_config_file_subscriptions_follow_edits(replica_cli: Replica) -> None:
    server = replica_cli.server
    a = trigger_runs(server, "a", 2)
    b = trigger_runs(server, "b", 3)
    config = replica_cli.cwd / "replica.toml"
    config.write_text('[[sync]]\ntag = "a"\n')
    replica_cli.start("sync")
    replica_cli.wait_for(
        lambda: {r[0] for r in replica_cli.query("SELECT id FROM runs")} == set(a), what="tag a"
    )
    config.write_text('[[sync]]\ntag = "a"\n\n[[sync]]\ntag = "b"\n')
    replica_cli.wait_for(
        lambda: len(replica_cli.query("SELECT id FROM runs WHERE detached_at IS NULL")) == 5,
        what="tag b added",
    )
    config.write_text('[[sync]]\ntag = "b"\n')
    replica_cli.wait_for(
        lambda: (
            {r[0] for r in replica_cli.query("SELECT id FROM runs WHERE detached_at IS NULL")}
            == set(b)
        ),
        what="tag a removed",
    )
    config.write_text("[[sync]]\nnonsense = 1\n")  # a bad edit keeps what runs
    status = json.loads(replica_cli.run("status", "--json").stdout)
    assert [s["shape"] for s in status] == ["tag b"]


def test_concurrency_limit_shows_in_status(replica_cli: Replica, devserver_factory) -> None:
    limited = devserver_factory(live_concurrency_limit=1)
    replica_cli.env["TRIGGER_API_URL"] = limited.url
    replica_cli.env["TRIGGER_SECRET_KEY"] = limited.secret_key
    limited.trigger("t", {}, tags=["a"])
    limited.trigger("t", {}, tags=["b"])
    proc = replica_cli.start("sync", "--tag", "a", "--tag", "b")

    def limited_shape() -> bool:
        result = replica_cli.run("status", "--json")
        if result.returncode != 0:
            return False  # the database is not there yet
        status = json.loads(result.stdout)
        return any("subscription limit reached" in (s["last_error"] or "") for s in status)

    replica_cli.wait_for(limited_shape, what="a 429 in status")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 0
    assert "subscription limit reached, retrying in" in (proc.stderr.read() if proc.stderr else "")


def test_debug_logs_requests_without_the_token(replica_cli: Replica) -> None:
    trigger_runs(replica_cli.server, "t", 1)
    result = replica_cli.run("sync", "--tag", "t", "--once", "--debug")
    assert result.returncode == 0
    assert "GET " in result.stderr
    assert replica_cli.server.secret_key not in result.stderr
    json_logs = replica_cli.run("sync", "--tag", "t", "--once", "--json-logs")
    lines = [json.loads(line) for line in json_logs.stderr.splitlines() if line.strip()]
    assert lines and all({"ts", "level", "message"} <= set(line) for line in lines)


def test_replica_toml_errors_are_usage_errors(replica_cli: Replica) -> None:
    (replica_cli.cwd / "replica.toml").write_text(
        textwrap.dedent("""
        [[sync]]
        tag = "a"
        run = "run_x"
    """)
    )
    result = replica_cli.run("sync")
    assert result.returncode == 2
    assert "exactly one of tag, tags, run, batch" in one_error_line(result)


def test_detached_delete_policy_removes_runs_that_leave(replica_cli: Replica) -> None:
    server = replica_cli.server
    gone = server.trigger("t", {}, tags=["x"])
    result = replica_cli.run("sync", "--tag", "x", "--once", "--detached", "delete")
    assert result.returncode == 0, result.stderr
    server.update_run(gone, runTags=["y"])  # the run leaves the tag's shape
    result = replica_cli.run("sync", "--tag", "x", "--once", "--detached", "delete")
    assert result.returncode == 0, result.stderr
    assert replica_cli.query("SELECT count(*) FROM runs") == [(0,)]


def test_a_replica_toml_made_after_the_sync_started_is_followed(replica_cli: Replica) -> None:
    server = replica_cli.server
    a = trigger_runs(server, "a", 1)
    b = trigger_runs(server, "b", 2)
    replica_cli.start("sync", "--tag", "a")
    replica_cli.wait_for(
        lambda: {r[0] for r in replica_cli.query("SELECT id FROM runs")} == set(a), what="tag a"
    )
    (replica_cli.cwd / "replica.toml").write_text('[[sync]]\ntag = "b"\n')
    replica_cli.wait_for(
        lambda: {r[0] for r in replica_cli.query("SELECT id FROM runs")} == {*a, *b},
        what="tag b, named by the new replica.toml",
    )
    (replica_cli.cwd / "replica.toml").unlink()
    replica_cli.wait_for(
        lambda: (
            {r[0] for r in replica_cli.query("SELECT id FROM runs WHERE detached_at IS NULL")}
            == set(a)
        ),
        what="tag b let go of with the file",
    )


def test_electric_shapes_that_differ_only_in_params_have_their_own_labels(
    replica_cli: Replica,
) -> None:
    server = replica_cli.server
    server.define_table("items", {"id": "int4", "title": "text"}, "id")
    server.insert("items", {"id": 1, "title": "a"}, {"id": 2, "title": "b"})
    base = ("--electric", server.url, "--table", "items", "--where", "id >= $1")
    synced = replica_cli.run("sync", *base, "--param", "1", "--once")
    assert synced.returncode == 0, synced.stderr
    synced = replica_cli.run("sync", *base, "--param", "2", "--once", "--keep-others")
    assert synced.returncode == 0, synced.stderr
    labels = [s["shape"] for s in json.loads(replica_cli.run("status", "--json").stdout)]
    assert labels == ["items where id >= $1 with $1='1'", "items where id >= $1 with $1='2'"]
    reset = replica_cli.run("reset", "--shape", labels[1])
    assert reset.returncode == 0 and reset.stdout.count("reset ") == 1
