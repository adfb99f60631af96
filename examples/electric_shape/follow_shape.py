"""A plain ElectricSQL shape, materialised into a local SQLite table and followed live.

The shape's rows land in a table of the same name in the replica (typed from the shape's
schema); a callback in this process prints every change as it is committed.

    python examples/electric_shape/follow_shape.py --url http://localhost:3000 --table items
    python examples/electric_shape/follow_shape.py --url ... --table items --once   # snapshot
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

import replica


def show(values: dict[str, Any] | None) -> str:
    return json.dumps(values, sort_keys=True, default=str)


def print_change(change: replica.Change) -> None:
    if change.op == "reset":
        print(f"reset: changes up to {change.seq} were pruned; re-read the table", flush=True)
    elif change.op == "update":
        changed = {name: (change.row or {}).get(name) for name in change.changed}
        print(f"update {change.key} {show(changed)} was {show(change.old)}", flush=True)
    else:  # an insert shows the new row, a delete the row that went
        print(f"{change.op} {change.key} {show(change.row or change.old)}", flush=True)


async def follow(db: replica.Replica, feed: replica.Feed, table: str, once: bool) -> bool:
    if once:
        ok = await db.async_sync(feed, once=True)
        quoted = table.replace('"', '""')
        for row in db.query(f'SELECT * FROM "{quoted}" ORDER BY 1'):
            print(show(row), flush=True)
        return ok
    # Every change the sync commits, from the first snapshot on, reaches the callback.
    db.on_change(table)(print_change)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: (db.stop_sync(), db.stop()))
    listening = asyncio.create_task(db.alisten())
    try:
        return await db.async_sync(feed)
    finally:
        db.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await listening


async def main_async(args: argparse.Namespace) -> int:
    feed = replica.electric(
        args.url,
        args.table,
        where=args.where,
        params=args.param,
        columns=args.columns.split(",") if args.columns else None,
    )
    with replica.Replica(args.db) as db:
        task = asyncio.create_task(follow(db, feed, args.table, args.once))
        if args.duration is not None:
            asyncio.get_running_loop().call_later(args.duration, db.stop_sync)
        ok = await task
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="Electric server URL")
    parser.add_argument("--table", required=True, help="the Postgres table of the shape")
    parser.add_argument("--where", help="a Postgres WHERE clause, $1.. for --param values")
    parser.add_argument("--param", action="append", default=[], help="a value of $1, $2, ...")
    parser.add_argument("--columns", help="comma-separated columns (default: all)")
    parser.add_argument("--db", help="the replica database (default: REPLICA_DB or replica.db)")
    parser.add_argument("--once", action="store_true", help="sync until up to date, print, exit")
    parser.add_argument("--duration", type=float, help="stop following after this many seconds")
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
