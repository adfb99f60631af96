"""A reader process for the concurrency test: queries a replica in a loop while it is being
written, and reports what happened as one JSON line on stdout.

    python tests/reliability/reader.py DB STOP WAY

It prints `ready` once connected and reads until the file STOP exists. WAY is how it reads:
`sqlite3` (a plain connection, as any program would open the file), `readonly` (a `mode=ro`
URI connection) or `replica` (`replica.Replica(...).query`).
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from replica import Replica

QUERIES = [
    "SELECT count(*) FROM runs",
    "SELECT status, count(*) FROM runs GROUP BY status",
    "SELECT id, metadata FROM runs ORDER BY updated_at DESC LIMIT 20",
    "SELECT count(*) FROM run_tags WHERE tag = 'load'",
    "SELECT max(seq) FROM _replica_changes",
    "SELECT state, rows FROM _replica_shapes",
    "SELECT * FROM runs WHERE id = (SELECT max(id) FROM runs)",
    "SELECT count(*) FROM run_history",
]


def main() -> None:
    db_path, stop, way = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    rng = random.Random(hash(way))
    done = Counter[str]()
    errors = Counter[str]()
    if way == "replica":
        replica = Replica(db_path, watch_files=False)

        def run(sql: str) -> Any:
            return replica.query(sql)

    else:
        if way == "sqlite3":
            conn = sqlite3.connect(db_path)
        else:
            conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)

        def run(sql: str) -> Any:
            return conn.execute(sql).fetchall()

    print("ready", flush=True)
    while not stop.exists():
        sql = rng.choice(QUERIES)
        try:
            run(sql)
            done["queries"] += 1
        except Exception as exc:  # counted and reported, whatever it is
            errors[f"{type(exc).__name__}: {exc}"] += 1
    print(json.dumps({"way": way, "queries": done["queries"], "errors": dict(errors)}), flush=True)


if __name__ == "__main__":
    main()
