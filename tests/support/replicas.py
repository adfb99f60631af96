"""Replica files holding known runs, written through the store as `replica sync` writes."""

from __future__ import annotations

from pathlib import Path

from replica.store import Store
from replica.tables import RowChange
from tests.notify.helpers import Writer, run


def replica_with(path: Path, *changes: RowChange) -> Path:
    """Create the replica at `path` with `changes` committed in one page of shape `tag:a`."""
    with Store(path) as store:
        Writer(store).commit(*changes)
    return path


def sample_replica(path: Path) -> Path:
    """Three runs: `run_1` completed with a payload, `run_2` failed with an error and the tag
    `user:1`, `run_3` queued with a non-ASCII task name."""
    return replica_with(
        path,
        run(1, payload='{"to": "ada@example.com"}', status="COMPLETED"),
        run(2, status="FAILED", tags='["user:1"]', error='{"message": "boom"}'),
        run(3, task_identifier="résumé"),
    )
