"""A failure-alert worker: one alert per run that fails, exactly once per failure, across
restarts.

It reads the replica that `replica sync` keeps up to date (in another process) and never
talks to Trigger.dev itself. The durable consumer ("failure-alerts") remembers the last
change it handled, so a restarted worker alerts on failures that happened while it was
down and never alerts twice for the same one.

    replica sync --tag user:1234 &
    python examples/failure_alerts/alerts.py --tag user:1234

Replace `send_alert` with your Slack webhook, PagerDuty call or e-mail.
"""

from __future__ import annotations

import argparse
import signal
import sys

import replica

#: The statuses `Run.is_failed` counts as failures (as the Trigger.dev SDK's `isFailed`).
FAILED = ("FAILED", "CRASHED", "SYSTEM_FAILURE", "EXPIRED", "TIMED_OUT")


def failure_filter(tag: str | None) -> str:
    """The `where` of the callback: a failed run, carrying `tag` if one is given."""
    statuses = ", ".join(f"'{status}'" for status in FAILED)
    where = f"status IN ({statuses})"
    if tag:
        quoted = tag.replace("'", "''")  # a SQL string literal; filters take no parameters
        where += f" AND EXISTS (SELECT 1 FROM json_each(tags) WHERE value = '{quoted}')"
    return where


def send_alert(run: replica.Run) -> None:
    """Deliver one alert. Here: a line on stdout."""
    message = run.error.message if run.error else "(no error message)"
    print(f"ALERT {run.id} {run.task_identifier} {run.status}: {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="the replica database (default: REPLICA_DB or replica.db)")
    parser.add_argument("--tag", help="only runs carrying this tag")
    parser.add_argument("--consumer", default="failure-alerts", help="durable consumer name")
    parser.add_argument(
        "--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)"
    )
    args = parser.parse_args(argv)

    with replica.Replica(args.db) as db:

        @db.on_change(
            "runs", where=failure_filter(args.tag), ops=["insert", "update"], consumer=args.consumer
        )
        def on_failure(change: replica.Change) -> None:
            if change.op == "reset":
                # Changes were pruned before this worker saw them (it was down for more
                # than the log's maximum age): say so rather than pretend nothing failed.
                print(f"WARNING alerts before change {change.seq} were missed", flush=True)
                return
            # An update of a run that had already failed (its metadata, or leaving the tag
            # window) matches the filter too: alert on the transition into failure only.
            if change.op == "update" and "status" not in change.changed:
                return
            run = change.run()
            if run is not None:
                send_alert(run)

        # Ctrl-C and SIGTERM (systemd, docker stop) end listen() cleanly; a change being
        # handled is finished and acknowledged first.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: db.stop())
        print(f"watching {db.path} for failed runs{f' tagged {args.tag}' if args.tag else ''}")
        sys.stdout.flush()
        db.listen(timeout=args.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
