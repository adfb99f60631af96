"""A listener process for the cross-process tests: appends every change it is given to a
file as a JSON line (flushed before the callback returns, i.e. before the ack).

    python tests/notify/listener.py DB OUT [--consumer NAME] [--delay SECONDS] [--where SQL]

It writes `ready` to stdout once registered and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from replica import Change, Replica


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("out")
    parser.add_argument("--consumer")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--where")
    args = parser.parse_args()
    db = Replica(args.db)
    out = open(args.out, "a")  # noqa: SIM115 - lives as long as the process

    @db.on_change("runs", consumer=args.consumer, start="beginning", where=args.where)
    def record(change: Change) -> None:
        status = change.row["status"] if change.row else None
        line = {"seq": change.seq, "op": change.op, "key": change.key, "status": status}
        out.write(json.dumps(line) + "\n")
        out.flush()
        if args.delay:
            time.sleep(args.delay)

    signal.signal(signal.SIGTERM, lambda *_: db.stop())
    print("ready", flush=True)
    db.listen()
    db.close()
    print("stopped", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
