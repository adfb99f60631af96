"""Reading typed runs: the SQL behind `Replica.runs` (`replica.task_models` says which
`Run` model validates each row).

Kept apart from `replica.api` so that the facade stays a facade; nothing here touches a
connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args

from replica.errors import ReplicaError
from replica.models import RunStatus


def _public_statuses(given: Sequence[object]) -> list[str]:
    """`given` as public RunStatus values (any case); an unknown one is refused, since it
    would quietly match nothing."""
    known = get_args(RunStatus)
    statuses = []
    for value in given:
        status = value.upper() if isinstance(value, str) else value
        if status not in known:
            raise ReplicaError(
                f"{value!r} is not a run status",
                hint=f"statuses are {', '.join(known)} (in any case)",
            )
        statuses.append(status)
    return statuses


def select_runs(
    tag: str | Sequence[str] | None = None,
    status: str | Sequence[str] | None = None,
    task: str | None = None,
    limit: int | None = None,
    *,
    include_detached: bool = False,
) -> tuple[str, list[Any]]:
    """`SELECT * FROM runs` with every one of `tag`s, any of `status`es, of `task`, newest
    first; runs that left every subscribed shape only with `include_detached`."""
    where: list[str] = []
    params: list[Any] = []
    if not include_detached:
        where.append("detached_at IS NULL")
    if tag is not None:
        tags = sorted({tag} if isinstance(tag, str) else set(tag))
        marks = ", ".join("?" for _ in tags)
        # run_tags is indexed by tag; "all of these tags" is a count over the matches.
        where.append(
            f"id IN (SELECT run_id FROM run_tags WHERE tag IN ({marks}) GROUP BY run_id "
            "HAVING count(DISTINCT tag) = ?)"
        )
        params += [*tags, len(tags)]
    if status is not None:
        statuses = _public_statuses([status] if isinstance(status, str) else list(status))
        where.append(f"status IN ({', '.join('?' for _ in statuses)})")
        params += statuses
    if task is not None:
        where.append("task_identifier = ?")
        params.append(task)
    sql = "SELECT * FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return sql, params
