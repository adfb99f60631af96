"""Which `Run` model reads each run: one per task, like the SDK's
`subscribeToRunsWithTag<typeof taskA | typeof taskB>`.

A task's model narrows `task_identifier` to a `Literal` (`class EmailRun(Run[...],
frozen=True): task_identifier: Literal["send-email"]`). `model=EmailRun | ReportRun` or
`models={"send-email": EmailRun}` picks the model by the run's task, never by trying each
in turn; `other` says what becomes of a run of a task no model names. Every reading entry
point (`Replica.run`/`runs`, the run streams, `Change.run`) goes through `RunModels`.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from replica.errors import ReplicaError
from replica.models import Run

#: What becomes of a run whose task no model names: an untyped `Run` (`"run"`), a
#: `ReplicaError` (`"error"`) or nothing (`"skip"`: left out of the result).
OtherTasks = Literal["run", "error", "skip"]

_OTHER_TASKS = get_args(OtherTasks)


def _tasks_of(model: type[Run[Any, Any]]) -> tuple[str, ...] | None:
    """The tasks a model is for (its `task_identifier` Literal), or None: any task."""
    annotation = model.model_fields["task_identifier"].annotation
    if get_origin(annotation) is Literal:
        return tuple(str(task) for task in get_args(annotation))
    return None


def _checked_model(candidate: object, where: str) -> type[Run[Any, Any]]:
    if isinstance(candidate, type) and issubclass(candidate, Run):
        return candidate
    raise ReplicaError(
        f"{where} is {candidate!r}, not a Run model",
        hint="give replica.Run, Run[Payload, Output] or a subclass of it",
    )


@dataclass(frozen=True)
class RunModels:
    """The model of each task, and of runs of every other task.

    `by_task` maps a task identifier to its model; `fallback` reads runs of other tasks
    (None: they are refused or skipped, as `other` says).
    """

    by_task: Mapping[str, type[Run[Any, Any]]]
    fallback: type[Run[Any, Any]] | None
    other: OtherTasks = "run"

    @classmethod
    def of(
        cls,
        model: Any = Run,
        models: Mapping[str, Any] | None = None,
        other: OtherTasks = "run",
        *,
        payload_model: Any = None,
        output_model: Any = None,
    ) -> RunModels:
        """The choice `model=` (a model or a union of models) or `models=` (task -> model)
        describes; a model whose `task_identifier` is no `Literal` reads every task no other
        model names. `payload_model=`/`output_model=` are shorthands for `model=Run[P, O]`
        (a side left out stays untyped, `Any`). Contradictions (two models for one task, two
        spellings at once) are refused."""
        if other not in _OTHER_TASKS:
            raise ReplicaError(
                f"other={other!r} is not a choice", hint=f"use one of {', '.join(_OTHER_TASKS)}"
            )
        shorthand = payload_model is not None or output_model is not None
        given = [
            name
            for name, present in [
                ("model=", model is not Run),
                ("models=", models is not None),
                ("payload_model=/output_model=", shorthand),
            ]
            if present
        ]
        if len(given) > 1:
            raise ReplicaError(
                f"{', '.join(given[:-1])} and {given[-1]} were "
                f"{'both' if len(given) == 2 else 'all'} given",
                hint="pass model=Run[Payload, Output] or model=EmailRun | ReportRun, "
                "models={task: model}, or payload_model=/output_model=, alone",
            )
        if models is not None:
            return cls._of_mapping(models, other)
        if shorthand:
            payload = payload_model if payload_model is not None else Any
            output = output_model if output_model is not None else Any
            model = Run[payload, output]  # type: ignore[valid-type]  # types known at run time
        return cls._of_union(model, other)

    @classmethod
    def _of_union(cls, model: Any, other: OtherTasks) -> RunModels:
        members = get_args(model) if get_origin(model) in (Union, types.UnionType) else (model,)
        by_task: dict[str, type[Run[Any, Any]]] = {}
        fallback: type[Run[Any, Any]] | None = None
        for member in members:
            chosen = _checked_model(member, "a member of model=" if len(members) > 1 else "model=")
            tasks = _tasks_of(chosen)
            if tasks is None:
                if fallback is not None:
                    raise ReplicaError(
                        f"model= has two models for every task: {fallback.__name__} and "
                        f"{chosen.__name__}",
                        hint='narrow task_identifier to a Literal["task-id"] in one of them',
                    )
                fallback = chosen
            for task in tasks or ():
                if task in by_task:
                    raise ReplicaError(
                        f"model= has two models for task {task!r}: {by_task[task].__name__} "
                        f"and {chosen.__name__}"
                    )
                by_task[task] = chosen
        if fallback is None and other == "run":
            fallback = Run
        return cls(by_task, fallback, other)

    @classmethod
    def _of_mapping(cls, models: Mapping[str, Any], other: OtherTasks) -> RunModels:
        by_task: dict[str, type[Run[Any, Any]]] = {}
        for task, model in models.items():
            chosen = _checked_model(model, f"models[{task!r}]")
            tasks = _tasks_of(chosen)
            if tasks is not None and task not in tasks:
                # Every run of the task would fail validation on task_identifier.
                raise ReplicaError(
                    f"models[{task!r}] is {chosen.__name__}, a model of task "
                    f"{' or '.join(map(repr, tasks))}",
                    hint="key each model by the task it is for",
                )
            by_task[task] = chosen
        return cls(by_task, Run if other == "run" else None, other)

    def model_for(self, run_id: object, task: object) -> type[Run[Any, Any]] | None:
        """The model of a run of `task` (None: skip it); raises if such runs are refused."""
        chosen = self.by_task.get(str(task), self.fallback)
        if chosen is None and self.other == "error":
            named = ", ".join(sorted(self.by_task)) or "none"
            raise ReplicaError(
                f"run {run_id} is of task {task!r}, which no model is given for "
                f"(models are given for: {named})",
                hint="add a model for it, or pass other='run' to read such runs untyped "
                "or other='skip' to leave them out",
            )
        return chosen

    def from_row(self, row: Mapping[str, Any]) -> Run[Any, Any] | None:
        """A stored `runs` row read with the model of its task (see `Run.from_row`)."""
        chosen = self.model_for(row.get("id"), row.get("task_identifier"))
        return chosen.from_row(row) if chosen is not None else None

    def from_values(self, values: Mapping[str, Any]) -> Run[Any, Any] | None:
        """A decoded `runs` row read with the model of its task (see `Run.from_values`)."""
        chosen = self.model_for(values.get("id"), values.get("task_identifier"))
        return chosen.from_values(values) if chosen is not None else None


__all__ = ["OtherTasks", "RunModels"]
