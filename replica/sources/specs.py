"""What to follow: one frozen spec per kind of feed.

A spec is built once, at the edge (the `sync` command's options, a `[[sync]]` entry of
`replica.toml`, or `replica.tag(...)` and its siblings), checked as it is made, and carried
unchanged to the source that follows it. It holds no secret and no server address beyond the
shape's own identity (an Electric URL): how to reach Trigger.dev travels beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from replica.errors import ShapeDefinitionError
from replica.protocol.shape import ShapeDefinition
from replica.sources.electric import electric_endpoint
from replica.sources.trigger import (
    TriggerConfig,
    batch_shape,
    check_batch_id,
    check_duration,
    check_run_id,
    check_skip_columns,
    check_tags,
    run_shape,
    tag_shape,
)
from replica.sources.where import check_where


def _set(spec: object, name: str, value: object) -> None:
    object.__setattr__(spec, name, value)


@dataclass(frozen=True)
class TagSpec:
    """Runs carrying all of `tags`, created within `created_at` (Trigger.dev's tag feed)."""

    tags: tuple[str, ...]
    created_at: str | None = None
    skip_columns: tuple[str, ...] = ()

    kind: ClassVar[str] = "tag"

    def __post_init__(self) -> None:
        _set(self, "tags", check_tags(self.tags))
        if self.created_at is not None:
            _set(self, "created_at", check_duration(self.created_at))
        _set(self, "skip_columns", check_skip_columns(self.skip_columns))

    @property
    def label(self) -> str:
        return f"tag {','.join(self.tags)}"

    def shape(self, config: TriggerConfig) -> ShapeDefinition:
        return tag_shape(
            config, self.tags, created_at=self.created_at, skip_columns=self.skip_columns
        )


@dataclass(frozen=True)
class RunSpec:
    """One run (`run_...`), polled until 30 s after it finished unless not
    `stop_on_completion` (as the SDK's `subscribeToRun`)."""

    run_id: str
    skip_columns: tuple[str, ...] = ()
    stop_on_completion: bool = True

    kind: ClassVar[str] = "run"

    def __post_init__(self) -> None:
        _set(self, "run_id", check_run_id(self.run_id))
        _set(self, "skip_columns", check_skip_columns(self.skip_columns))

    @property
    def label(self) -> str:
        return f"run {self.run_id}"

    def shape(self, config: TriggerConfig) -> ShapeDefinition:
        return run_shape(config, self.run_id, skip_columns=self.skip_columns)


@dataclass(frozen=True)
class BatchSpec:
    """The runs of a batch (`batch_...`)."""

    batch_id: str
    skip_columns: tuple[str, ...] = ()

    kind: ClassVar[str] = "batch"

    def __post_init__(self) -> None:
        _set(self, "batch_id", check_batch_id(self.batch_id))
        _set(self, "skip_columns", check_skip_columns(self.skip_columns))

    @property
    def label(self) -> str:
        return f"batch {self.batch_id}"

    def shape(self, config: TriggerConfig) -> ShapeDefinition:
        return batch_shape(config, self.batch_id, skip_columns=self.skip_columns)


@dataclass(frozen=True)
class ElectricSpec:
    """A plain Electric shape from the server at `url`, into a local table named after
    `table`: rows matching `where` (a Postgres condition, `$1`.. being `params`), some
    `columns`, in Electric's `replica` mode."""

    url: str
    table: str
    where: str | None = None
    params: tuple[str, ...] = ()
    columns: tuple[str, ...] | None = None
    replica: Literal["default", "full"] | None = None

    kind: ClassVar[str] = "electric"

    def __post_init__(self) -> None:
        if not isinstance(self.table, str) or not self.table.strip():
            raise ShapeDefinitionError("a plain Electric shape needs a table name")
        _set(self, "table", self.table.strip())
        _set(self, "params", tuple(str(p) for p in self.params))
        if self.where is not None:
            _set(self, "where", check_where(self.where, self.params))
        elif self.params:
            raise ShapeDefinitionError("params given without a where clause")
        if self.columns is not None:
            names = tuple(c.strip() for c in self.columns if c.strip())
            if not names:
                raise ShapeDefinitionError("the column list is empty")
            _set(self, "columns", names)
        if self.replica not in (None, "default", "full"):
            raise ShapeDefinitionError(f"replica must be 'default' or 'full', got {self.replica!r}")
        self.shape(None)  # a bad URL or shape fails here, before any request

    @property
    def label(self) -> str:
        label = self.table
        if self.where:
            label += f" where {self.where}"
        if self.params:
            label += " with " + ", ".join(f"${n}={v!r}" for n, v in enumerate(self.params, 1))
        return label

    def shape(self, secret: str | None) -> ShapeDefinition:
        endpoint, extra = electric_endpoint(self.url)
        return ShapeDefinition(
            endpoint,
            table=self.table,
            where=self.where,
            where_params=list(self.params) or None,
            columns=list(self.columns) if self.columns else None,
            replica=self.replica,
            params={**extra, "secret": secret} if secret else extra,
        )


TriggerSpec = TagSpec | RunSpec | BatchSpec
FeedSpec = TagSpec | RunSpec | BatchSpec | ElectricSpec


def tag_names(text: str) -> tuple[str, ...]:
    """The tags of a comma-separated `--tag` value (`a,b`: runs with both)."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


def column_names(values: Sequence[str]) -> tuple[str, ...]:
    """Column names given as repeated and/or comma-separated values."""
    return tuple(c.strip() for value in values for c in value.split(",") if c.strip())
