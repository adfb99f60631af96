"""A durable consumer process for the reliability suite: every change of every table, as one
JSON line appended (and flushed) before the callback returns, i.e. before its ack.

    python tests/reliability/consumer.py DB OUT NAME

Writes `ready` to stdout once registered; SIGTERM stops it, SIGKILL is what the tests use.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from replica import Change, Replica


def main() -> None:
    db_path, out_path, name = sys.argv[1:4]
    db = Replica(db_path, poll_interval=0.05)
    # A line torn by a SIGKILL of an earlier process must not swallow the next one.
    if os.path.exists(out_path) and os.path.getsize(out_path):
        with open(out_path, "rb") as existing:
            existing.seek(-1, os.SEEK_END)
            torn = existing.read(1) != b"\n"
    else:
        torn = False
    out = open(out_path, "a")  # noqa: SIM115 - lives as long as the process
    if torn:
        out.write("\n")

    @db.on_change(consumer=name, start="beginning")
    def record(change: Change) -> None:
        line = {"seq": change.seq, "op": change.op, "table": change.table, "key": change.key}
        out.write(json.dumps(line) + "\n")
        out.flush()

    signal.signal(signal.SIGTERM, lambda *_: db.stop())
    print("ready", flush=True)
    db.listen()
    db.close()


if __name__ == "__main__":
    main()
