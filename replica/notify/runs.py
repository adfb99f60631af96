"""The Trigger.dev SDK's run streams, served from the local replica.

`subscribe_to_run`, `subscribe_to_runs_with_tag` and `subscribe_to_batch` are async
iterators of typed runs, like `runs.subscribeToRun` and friends: the current state first,
then the run again whenever it changes. As in the SDK, this is state sync, not an event
log: changes committed between two wake-ups are seen as one (the latest row), and a run is
not yielded again unless something about it changed. A run is complete when `finished_at`
is set; `subscribe_to_run` then stops (with `stop_on_completion`, the default), after
yielding the finished run. Tag and batch streams never end by themselves.

Nothing here talks to Trigger.dev: the runs must be synced (`replica sync --tag ...`,
`--run`, `--batch`), by this process or another.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from replica.models import Run
from replica.notify.changes import head_seq, pruned_through
from replica.notify.wake import ChangeSignal, Pulse
from replica.store.database import connect
from replica.task_models import RunModels

log = logging.getLogger(__name__)

#: Runs fetched per query when many changed at once.
_CHUNK = 500


class _RunReader:
    """Reads runs on a read-only connection of its own; each call is one snapshot."""

    def __init__(self, path: Path) -> None:
        self.conn = connect(path, readonly=True)
        self.conn.row_factory = sqlite3.Row

    def close(self) -> None:
        self.conn.close()

    def one(self, run_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchall()
        return dict(row[0]) if row else None

    def changed_ids(self, cursor: int) -> tuple[list[str] | None, int]:
        """Ids of runs changed after `cursor` (oldest change first), ignoring changes that
        only detach a run; None if the log was pruned past the cursor."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            head = head_seq(conn)
            if cursor < pruned_through(conn):
                return None, head
            last: dict[str, int] = {}
            for seq, key, changed in conn.execute(
                "SELECT seq, key, changed FROM _replica_changes WHERE tbl = 'runs' AND seq > ? "
                "AND seq <= ? ORDER BY seq",
                (cursor, head),
            ).fetchall():
                if changed and orjson.loads(changed) == ["detached_at"]:
                    continue
                last.pop(key, None)  # re-insert: ordered by latest change
                last[key] = seq
            return list(last), head
        finally:
            conn.execute("COMMIT")

    def matching(self, condition: str, params: Sequence[Any], ids: list[str] | None) -> list[dict]:
        """Current runs satisfying `condition`, among `ids` (all runs if None)."""
        if ids is None:
            rows = self.conn.execute(
                f"SELECT * FROM runs WHERE detached_at IS NULL AND {condition} "
                "ORDER BY created_at, id",
                params,
            ).fetchall()
            return [dict(r) for r in rows]
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ", ".join("?" for _ in chunk)
            for row in self.conn.execute(
                f"SELECT * FROM runs WHERE id IN ({marks}) AND {condition}", (*chunk, *params)
            ).fetchall():
                found[row["id"]] = dict(row)
        return [found[i] for i in ids if i in found]


def _fingerprint(row: dict[str, Any]) -> int:
    return hash(tuple(row.values()))


async def subscribe_to_run(
    path: Path,
    signal: ChangeSignal,
    run_id: str,
    *,
    stop_on_completion: bool = True,
    models: RunModels,
) -> AsyncIterator[Run[Any, Any]]:
    """The run now (once it is in the replica), then after every change to it; a run of a
    task `models` skips is followed but not yielded."""
    reader = await asyncio.to_thread(_RunReader, path)
    pulse = Pulse(signal)
    try:
        last: int | None = None
        while True:
            seen = pulse.generation
            row = await asyncio.to_thread(reader.one, run_id)
            if row is not None and _fingerprint(row) != last:
                last = _fingerprint(row)
                run = models.from_row(row)
                if run is not None:
                    yield run
                # Run.is_finished, from the row: a run that is skipped ends the stream too.
                if stop_on_completion and row["finished_at"] is not None:
                    return
            await pulse.wait(seen)
    finally:
        pulse.close()
        reader.close()


async def _subscribe(
    path: Path,
    signal: ChangeSignal,
    condition: str,
    params: Sequence[Any],
    models: RunModels,
) -> AsyncIterator[Run[Any, Any]]:
    reader = await asyncio.to_thread(_RunReader, path)
    pulse = Pulse(signal)
    try:
        cursor = await asyncio.to_thread(head_seq, reader.conn)
        yielded: dict[str, int] = {}
        ids: list[str] | None = None  # None: list every matching run (first, or after a prune)
        while True:
            seen = pulse.generation
            rows = await asyncio.to_thread(reader.matching, condition, params, ids)
            for row in rows:
                mark = _fingerprint(row)
                if yielded.get(row["id"]) != mark:
                    yielded[row["id"]] = mark
                    run = models.from_row(row)
                    if run is not None:
                        yield run
            ids, cursor = await asyncio.to_thread(reader.changed_ids, cursor)
            while ids == []:
                await pulse.wait(seen)
                seen = pulse.generation
                ids, cursor = await asyncio.to_thread(reader.changed_ids, cursor)
    finally:
        pulse.close()
        reader.close()


def subscribe_to_runs_with_tag(
    path: Path,
    signal: ChangeSignal,
    tag: str | Sequence[str],
    *,
    models: RunModels,
) -> AsyncIterator[Run[Any, Any]]:
    """Runs having the tag (every one of the tags, given several), as they change."""
    tags = sorted({tag} if isinstance(tag, str) else set(tag))
    if not tags:
        raise ValueError("subscribe_to_runs_with_tag needs at least one tag")
    marks = ", ".join("?" for _ in tags)
    condition = (
        f"id IN (SELECT run_id FROM run_tags WHERE tag IN ({marks}) GROUP BY run_id "
        "HAVING count(DISTINCT tag) = ?)"
    )
    return _subscribe(path, signal, condition, (*tags, len(tags)), models)


def subscribe_to_batch(
    path: Path,
    signal: ChangeSignal,
    batch_id: str,
    *,
    models: RunModels,
) -> AsyncIterator[Run[Any, Any]]:
    """The runs of a batch synced with `replica sync --batch`, as they change."""
    # Membership says which runs the batch's feed delivered (runs hold no batch id).
    condition = (
        "internal_id IN (SELECT m.key FROM _replica_members AS m JOIN _replica_shapes AS s "
        "ON s.id = m.shape_id WHERE m.tbl = 'runs' AND s.kind = 'batch' AND "
        "(s.key LIKE '%/batches/' || ? ESCAPE '\\' "
        "OR s.key LIKE '%/batches/' || ? || '?%' ESCAPE '\\'))"
    )
    escaped = quote(batch_id, safe="").replace("\\", "\\\\").replace("%", "\\%")
    escaped = escaped.replace("_", "\\_")
    return _subscribe(path, signal, condition, (escaped, escaped), models)


__all__ = [
    "subscribe_to_batch",
    "subscribe_to_run",
    "subscribe_to_runs_with_tag",
]
