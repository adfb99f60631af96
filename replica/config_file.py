"""`replica.toml`: subscriptions declared in a file, re-read while `replica sync` runs.

```toml
[[sync]]
tag = "user:1234"              # or tags = ["a", "b"]: runs with both tags
created_at = "24h"
skip_columns = ["payload"]

[[sync]]
run = "run_cm0abc"
stop_on_completion = false     # keep polling after it finished (default: stop 30 s after)

[[sync]]
electric = "http://localhost:3000"
table = "items"
where = "id > $1"
params = ["10"]
```
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replica.errors import ReplicaError, ShapeDefinitionError
from replica.sources.specs import (
    BatchSpec,
    ElectricSpec,
    FeedSpec,
    RunSpec,
    TagSpec,
    tag_names,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_CONFIG = "replica.toml"

_TRIGGER_KEYS = {"tag", "tags", "run", "batch", "created_at", "skip_columns", "stop_on_completion"}
_ELECTRIC_KEYS = {"electric", "table", "where", "params", "columns", "replica"}


class ConfigError(ReplicaError):
    """The configuration file cannot be used."""

    hint = "fix replica.toml (see docs/cli.md#replicatoml)"


@dataclass(frozen=True)
class Config:
    """What a configuration file declares: the specs of its feeds, in file order."""

    feeds: tuple[FeedSpec, ...] = ()

    @property
    def needs_token(self) -> bool:
        """Whether any feed is a Trigger.dev one."""
        return any(not isinstance(spec, ElectricSpec) for spec in self.feeds)


def load(path: str | Path) -> Config:
    """Parse and check a configuration file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    entries = data.get("sync", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: [[sync]] must be a list of tables")
    unknown = set(data) - {"sync"}
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    feeds: list[FeedSpec] = []
    for number, entry in enumerate(entries, start=1):
        where = f"{path}: [[sync]] #{number}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a table")
        try:
            feeds.append(_spec(entry, where))
        except ShapeDefinitionError as exc:
            # The spec's own advice if it has some, else how to fix the file.
            own = exc.hint if exc.hint != ShapeDefinitionError.hint else None
            raise ConfigError(f"{where}: {exc.message}", hint=own) from None
    return Config(tuple(feeds))


def _spec(entry: Mapping[str, Any], where: str) -> FeedSpec:
    """The feed spec of one [[sync]] entry."""
    keys = set(entry)
    if "electric" in keys:
        extra = keys - _ELECTRIC_KEYS
        if extra or "table" not in keys:
            raise ConfigError(
                f"{where}: an Electric shape takes electric, table, where, params, columns, "
                f"replica{' (unknown: ' + ', '.join(sorted(extra)) + ')' if extra else ''}"
            )
        return ElectricSpec(
            _text(entry, "electric", where),
            _text(entry, "table", where),
            where=_text(entry, "where", where, required=False),
            params=tuple(_texts(entry, "params", where)),
            columns=tuple(_texts(entry, "columns", where)) if "columns" in entry else None,
            replica=_text(entry, "replica", where, required=False),
        )
    extra = keys - _TRIGGER_KEYS
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
    kinds = [k for k in ("tag", "tags", "run", "batch") if k in entry]
    if len(kinds) != 1:
        raise ConfigError(f"{where} needs exactly one of tag, tags, run, batch")
    skip = tuple(_texts(entry, "skip_columns", where))
    if "run" in entry:
        stop = entry.get("stop_on_completion", True)
        if not isinstance(stop, bool):
            raise ConfigError(f"{where}: stop_on_completion must be true or false")
        return RunSpec(_text(entry, "run", where), skip_columns=skip, stop_on_completion=stop)
    if "stop_on_completion" in entry:
        raise ConfigError(f"{where}: stop_on_completion applies to run entries")
    if "batch" in entry:
        return BatchSpec(_text(entry, "batch", where), skip_columns=skip)
    if "tag" in entry:
        tags = tag_names(_text(entry, "tag", where))
    else:
        tags = tuple(_texts(entry, "tags", where))
    return TagSpec(
        tags, created_at=_text(entry, "created_at", where, required=False), skip_columns=skip
    )


def _text(entry: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> Any:
    value = entry.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} must be a non-empty string")
    return value.strip()


def _texts(entry: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = entry.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise ConfigError(f"{where}: {key} must be a list of strings")
    return [str(v) for v in value]
