"""`run_tags` and `run_history`, derived from `runs` by the writer.

Row by row, TEMP triggers on the writer's connection keep them in step. A bulk upsert (a
page of thousands of runs) silences those triggers; both tables are derived beforehand with
a few sorted, set-based statements comparing the waiting rows with the stored ones.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

_QUIET = "(SELECT bulk FROM temp._replica_context) IS NULL"
_NOW = (
    "coalesce((SELECT committed_at FROM temp._replica_context), "
    "strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
)

TRIGGERS = (
    "DROP TRIGGER IF EXISTS temp._replica_derive_insert",
    "DROP TRIGGER IF EXISTS temp._replica_derive_tags",
    "DROP TRIGGER IF EXISTS temp._replica_derive_status",
    "DROP TRIGGER IF EXISTS temp._replica_derive_delete",
    f"""CREATE TEMP TRIGGER _replica_derive_insert AFTER INSERT ON main.runs WHEN {_QUIET}
    BEGIN
        INSERT OR IGNORE INTO run_tags (tag, run_id)
            SELECT value, NEW.id FROM json_each(NEW.tags) WHERE type = 'text';
        INSERT INTO run_history (run_id, status, previous_status, at, observed_at)
            VALUES (NEW.id, NEW.status, NULL, NEW.updated_at, {_NOW});
    END""",
    f"""CREATE TEMP TRIGGER _replica_derive_tags AFTER UPDATE OF tags ON main.runs
    WHEN NEW.tags IS NOT OLD.tags AND {_QUIET}
    BEGIN
        DELETE FROM run_tags WHERE run_id = OLD.id
            AND tag IN (SELECT value FROM json_each(OLD.tags));
        INSERT OR IGNORE INTO run_tags (tag, run_id)
            SELECT value, NEW.id FROM json_each(NEW.tags) WHERE type = 'text';
    END""",
    f"""CREATE TEMP TRIGGER _replica_derive_status AFTER UPDATE OF status ON main.runs
    WHEN NEW.status IS NOT OLD.status AND {_QUIET}
    BEGIN
        INSERT INTO run_history (run_id, status, previous_status, at, observed_at)
            VALUES (NEW.id, NEW.status, OLD.status, NEW.updated_at, {_NOW});
    END""",
    """CREATE TEMP TRIGGER _replica_derive_delete AFTER DELETE ON main.runs
    BEGIN
        DELETE FROM run_tags WHERE run_id = OLD.id
            AND tag IN (SELECT value FROM json_each(OLD.tags));
    END""",
)


def derive_waiting(
    conn: sqlite3.Connection, source: str, names: Sequence[str], page: Sequence[int] = ()
) -> None:
    """Bring `run_tags` and `run_history` in step with the runs waiting in `source` (the
    batch or staged table; with `page`, those between its first and last rowid) before they
    are upserted: compared with the stored runs, new runs get their
    tags and first status, runs whose tags changed get their tags again, runs whose status
    changed a history entry. Inserts are sorted, so each B-tree page is touched once."""
    between = " AND s.rowid BETWEEN ? AND ?" if page else ""
    joined = f"FROM {source} AS s LEFT JOIN runs AS r ON r.internal_id = s.internal_id"
    if "tags" in names:
        changed = "s.tags IS NOT r.tags"
        conn.execute(
            "DELETE FROM run_tags WHERE (tag, run_id) IN (SELECT j.value, r.id "
            f"FROM {source} AS s JOIN runs AS r ON r.internal_id = s.internal_id, "
            f"json_each(r.tags) AS j WHERE {changed}{between})",
            page,
        )
        conn.execute(
            "INSERT OR IGNORE INTO run_tags (tag, run_id) SELECT j.value, s.id "
            f"{joined}, json_each(s.tags) AS j "
            f"WHERE (r.internal_id IS NULL OR {changed}){between} AND j.type = 'text' "
            "ORDER BY 1, 2",
            page,
        )
    if "status" in names:
        at = "s.updated_at" if "updated_at" in names else "r.updated_at"
        conn.execute(
            "INSERT INTO run_history (run_id, status, previous_status, at, observed_at) "
            f"SELECT s.id, s.status, r.status, {at}, {_NOW} {joined} "
            f"WHERE (r.internal_id IS NULL OR s.status IS NOT r.status){between} "
            "ORDER BY s.id",
            page,
        )
