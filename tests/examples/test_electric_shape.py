"""examples/electric_shape: a plain Electric shape becomes a local table, followed live."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from replica.devserver import DevServer
from tests.support.env import replica_env

from .helpers import EXAMPLES, Process, python, query

EXAMPLE = EXAMPLES / "electric_shape" / "follow_shape.py"


def define_items(server: DevServer, name: str) -> str:
    """A table of three rows (each test has its own: they change them)."""
    server.define_table(
        name,
        {"id": "int4", "title": "text", "priority": "int4", "done": "bool", "labels": "text[]"},
        "id",
    )
    server.insert(
        name,
        {"id": 1, "title": "write docs", "priority": 3, "done": False, "labels": ["docs"]},
        {"id": 2, "title": "fix bug", "priority": 1, "done": True, "labels": []},
        {"id": 3, "title": "ship", "priority": 2, "done": False, "labels": ["release", "v1"]},
    )
    return name


def test_once_materialises_the_shape_into_a_table(tmp_path: Path, server: DevServer) -> None:
    items = define_items(server, "items")
    db = tmp_path / "replica.db"
    args = ["--url", server.url, "--table", items, "--where", "priority > $1", "--param", "1"]
    result = subprocess.run(
        python(EXAMPLE, *args, "--once"),
        cwd=tmp_path,
        env=replica_env(server, db),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(row["id"], row["title"]) for row in printed] == [(1, "write docs"), (3, "ship")]
    # A real table, typed from the shape's schema: integers, booleans as 0/1, arrays as JSON.
    assert query(db, "SELECT id, priority, done, labels FROM items ORDER BY id") == [
        (1, 3, 0, '["docs"]'),
        (3, 2, 0, '["release","v1"]'),
    ]
    assert query(db, "SELECT typeof(id), typeof(priority) FROM items LIMIT 1") == [
        ("integer", "integer")
    ]


def test_follows_changes_live_and_stops_on_sigterm(
    tmp_path: Path, server: DevServer, processes: Callable[..., Process]
) -> None:
    items = define_items(server, "todo")
    follower = processes(
        python(EXAMPLE, "--url", server.url, "--table", items, "--duration", "60"),
        env=replica_env(server, tmp_path / "replica.db"),
        cwd=tmp_path,
    )
    for key in ("1", "2", "3"):  # the snapshot arrives as inserts
        follower.wait_for_line(lambda line, key=key: line.startswith(f"insert {key} "))
    server.update(items, {"id": 2}, {"title": "fix the bug"})
    server.insert(items, {"id": 4, "title": "celebrate", "priority": 5, "done": False})
    server.delete(items, {"id": 3})
    follower.wait_for_line(lambda line: line.startswith("delete 3 "))
    assert follower.stop() == 0
    live = follower.lines[3:]
    assert live[0] == 'update 2 {"title": "fix the bug"} was {"title": "fix bug"}'
    assert live[1].startswith("insert 4 ") and '"title": "celebrate"' in live[1]
    assert live[2].startswith("delete 3 ") and '"title": "ship"' in live[2]
    assert len(live) == 3
