"""Shapes the user no longer follows let go of their rows: at the next start of a sync that
does not name them (unless --keep-others), or at once with `replica forget`."""

from __future__ import annotations

from .conftest import Replica, one_error_line


def _attached(replica_cli: Replica) -> set[str]:
    rows = replica_cli.query("SELECT id FROM runs WHERE detached_at IS NULL")
    return {run_id for (run_id,) in rows}


def _labels(replica_cli: Replica) -> set[str]:
    rows = replica_cli.query("SELECT json_extract(definition, '$.label') FROM _replica_shapes")
    return {label for (label,) in rows}


def test_a_sync_lets_go_of_shapes_it_no_longer_names(replica_cli: Replica) -> None:
    server = replica_cli.server
    acme = server.trigger("send-email", {}, tags=["org:acme"])
    both = server.trigger("send-email", {}, tags=["org:acme", "user:1234"])
    mine = server.trigger("send-email", {}, tags=["user:1234"])
    assert replica_cli.run("sync", "--tag", "org:acme", "--once").returncode == 0
    assert _attached(replica_cli) == {acme, both}
    result = replica_cli.run("sync", "--tag", "user:1234", "--once")
    assert result.returncode == 0, result.stderr
    # org:acme is let go of: its runs stay as history, detached, unless user:1234 holds them.
    assert _attached(replica_cli) == {both, mine}
    assert replica_cli.query("SELECT count(*) FROM runs")[0][0] == 3
    assert _labels(replica_cli) == {"tag user:1234"}
    assert "no longer following tag org:acme" in result.stderr


def test_keep_others_keeps_them(replica_cli: Replica) -> None:
    server = replica_cli.server
    acme = server.trigger("send-email", {}, tags=["org:acme"])
    mine = server.trigger("send-email", {}, tags=["user:1234"])
    assert replica_cli.run("sync", "--tag", "org:acme", "--once").returncode == 0
    kept = replica_cli.run("sync", "--tag", "user:1234", "--once", "--keep-others")
    assert kept.returncode == 0, kept.stderr
    assert _attached(replica_cli) == {acme, mine}
    assert _labels(replica_cli) == {"tag org:acme", "tag user:1234"}


def test_shapes_dropped_from_replica_toml_are_let_go_of(replica_cli: Replica) -> None:
    server = replica_cli.server
    acme = server.trigger("send-email", {}, tags=["org:acme"])
    mine = server.trigger("send-email", {}, tags=["user:1234"])
    config = replica_cli.cwd / "replica.toml"
    config.write_text('[[sync]]\ntag = "org:acme"\n\n[[sync]]\ntag = "user:1234"\n')
    assert replica_cli.run("sync", "--once").returncode == 0
    assert _attached(replica_cli) == {acme, mine}
    config.write_text('[[sync]]\ntag = "user:1234"\n')
    assert replica_cli.run("sync", "--once").returncode == 0
    assert _attached(replica_cli) == {mine}


def test_electric_rows_of_a_dropped_shape_are_deleted(replica_cli: Replica) -> None:
    server = replica_cli.server
    server.define_table("items", {"id": "int4", "title": "text"}, "id")
    server.insert("items", {"id": 1, "title": "a"}, {"id": 2, "title": "b"})
    url = server.url
    low = ["sync", "--electric", url, "--table", "items", "--where", "id < $1", "--param", "2"]
    assert replica_cli.run(*low, "--once").returncode == 0
    assert replica_cli.query("SELECT id FROM items") == [(1,)]
    high = ["sync", "--electric", url, "--table", "items", "--where", "id > $1", "--param", "1"]
    assert replica_cli.run(*high, "--once").returncode == 0
    assert replica_cli.query("SELECT id FROM items") == [(2,)]


def test_forget_lets_go_of_one_shape(replica_cli: Replica) -> None:
    server = replica_cli.server
    acme = server.trigger("send-email", {}, tags=["org:acme"])
    mine = server.trigger("send-email", {}, tags=["user:1234"])
    synced = replica_cli.run("sync", "--tag", "org:acme", "--tag", "user:1234", "--once")
    assert synced.returncode == 0
    result = replica_cli.run("forget", "tag org:acme")
    assert result.returncode == 0, result.stderr
    assert "forgot tag org:acme" in result.stdout
    assert _attached(replica_cli) == {mine}
    assert acme in {r for (r,) in replica_cli.query("SELECT id FROM runs")}
    assert _labels(replica_cli) == {"tag user:1234"}
    status = replica_cli.run("status", "--json")
    assert "org:acme" not in status.stdout


def test_forget_names_the_known_shapes_when_none_matches(replica_cli: Replica) -> None:
    replica_cli.server.trigger("send-email", {}, tags=["user:1234"])
    assert replica_cli.run("sync", "--tag", "user:1234", "--once").returncode == 0
    result = replica_cli.run("forget", "tag nope")
    assert result.returncode == 1
    line = one_error_line(result)
    assert "no shape 'tag nope'" in line and "'tag user:1234'" in line
    assert _labels(replica_cli) == {"tag user:1234"}
