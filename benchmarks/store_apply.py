"""Applying 100k runs to the store, beside a raw prepared `executemany` upsert of the same rows.

Run: `python benchmarks/store_apply.py [--rows N] [--page N]`. Prints rows/s for:

- raw: `INSERT .. ON CONFLICT DO UPDATE` with executemany into a bare runs table (no
  triggers, no change log, no membership), one transaction per page: the SQLite ceiling;
- snapshot: `Store.apply` as an initial sync does it: pages staged durably, then published
  in one transaction (change log, run_tags, run_history, membership included);
- live: `Store.apply` with every page published at once (what a huge live batch costs).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import string
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from replica.store import Store
from replica.store.database import connect
from replica.tables import RUNS, RowChange

TASKS = ["send-email", "generate-report", "import-csv", "render-video", "sync-crm"]
STATUSES = ["QUEUED", "EXECUTING", "COMPLETED", "FAILED", "CANCELED"]


def make_runs(count: int, seed: int = 7) -> list[RowChange]:
    """Realistic runs of about 1 KB each, as the sources layer hands them to the store."""
    rng = random.Random(seed)
    words = ["".join(rng.choices(string.ascii_lowercase, k=8)) for _ in range(200)]
    runs = []
    for i in range(count):
        items = ",".join(str(rng.randrange(1000)) for _ in range(40))
        note = " ".join(rng.choices(words, k=50))
        payload = f'{{"accountId":"acct_{i}","items":[{items}],"note":"{note}"}}'
        stamp = f"2026-08-20T09:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z"
        values = {
            "id": f"run_{i:024d}",
            "task_identifier": rng.choice(TASKS),
            "status": rng.choice(STATUSES),
            "db_status": "EXECUTING",
            "payload": payload,
            "payload_type": "application/json",
            "metadata": f'{{"progress":{rng.random():.2f},"stage":"{rng.choice(words)}"}}',
            "metadata_type": "application/json",
            "output": None,
            "output_type": "application/json",
            "error": None,
            "tags": f'["user:{rng.randrange(500)}","org:{rng.randrange(50)}"]',
            "realtime_streams": "[]",
            "number": i,
            "is_test": 0,
            "duration_ms": rng.randrange(100000),
            "cost_in_cents": rng.random(),
            "base_cost_in_cents": 0.0025,
            "ttl": None,
            "created_at": stamp,
            "updated_at": stamp,
            "started_at": stamp,
            "finished_at": None,
            "queued_at": stamp,
            "delayed_until": None,
            "expired_at": None,
            "internal_id": f"cm{i:023d}",
        }
        runs.append(RowChange("insert", values["internal_id"], values))
    return runs


def raw_upsert(path: Path, runs: list[RowChange], page: int) -> float:
    conn = connect(path)
    columns = [c.name for c in RUNS.columns if c.name != "detached_at"]
    conn.execute(
        "CREATE TABLE runs ("
        + ", ".join(
            f"{c.name} {c.type}{' PRIMARY KEY' if c.name == 'id' else ''}"
            for c in RUNS.columns
            if c.name != "detached_at"
        )
        + ")"
    )
    sql = (
        f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT (id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in columns if c != "id")
    )
    rows = [tuple(r.values.get(c) for c in columns) for r in runs]  # pre-parsed, pre-ordered
    started = time.perf_counter()
    for i in range(0, len(rows), page):
        conn.execute("BEGIN")
        conn.executemany(sql, rows[i : i + page])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def store_apply(path: Path, runs: list[RowChange], page: int, *, staged: bool) -> float:
    with Store(path, lock=False) as store:
        shape = store.register_shape("bench", kind="tag", target="runs").id
        pages = [runs[i : i + page] for i in range(0, len(runs), page)]
        started = time.perf_counter()
        for n, changes in enumerate(pages):
            last = n == len(pages) - 1
            store.apply(
                shape,
                changes,
                position={"handle": "h", "offset": f"0_{n}"},
                up_to_date=last or not staged,
            )
        elapsed = time.perf_counter() - started
        count = store.conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        assert count == len(runs), count
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=5_000, help="rows per response page")
    args = parser.parse_args()
    runs = make_runs(args.rows)
    size = sum(len(str(v)) for r in runs[:1000] for v in r.values.values()) / 1000
    print(
        f"{args.rows:,} runs of ~{size:,.0f} bytes, {args.page:,} per page, "
        f"SQLite {sqlite3.sqlite_version}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            "raw executemany upsert": raw_upsert(Path(tmp) / "raw.db", runs, args.page),
            "Store.apply, snapshot (staged)": store_apply(
                Path(tmp) / "snapshot.db", runs, args.page, staged=True
            ),
            "Store.apply, live pages": store_apply(
                Path(tmp) / "live.db", runs, args.page, staged=False
            ),
        }
    baseline = results["raw executemany upsert"]
    print(f"{'path':34} {'seconds':>8} {'rows/s':>10} {'vs raw':>7}")
    for name, seconds in results.items():
        print(f"{name:34} {seconds:8.2f} {args.rows / seconds:10,.0f} {baseline / seconds:7.2f}")


if __name__ == "__main__":
    main()
