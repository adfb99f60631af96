"""`replica.toml`: subscriptions declared in a file, re-read while `replica sync` runs.

```toml
[[sync]]
tag = "user:1234"              # or tags = ["a", "b"]: runs with both tags
created_at = "24h"
skip_columns = ["payload"]

[[sync]]
run = "run_cm0abc"

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

from replica.errors import ReplicaError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_CONFIG = "replica.toml"

_TRIGGER_KEYS = {"tag", "tags", "run", "batch", "created_at", "skip_columns"}
_ELECTRIC_KEYS = {"electric", "table", "where", "params", "columns", "replica"}


class ConfigError(ReplicaError):
    """The configuration file cannot be used."""

    hint = "fix replica.toml (see docs/cli.md#replicatoml)"


@dataclass(frozen=True)
class TriggerEntry:
    """One Trigger.dev subscription: a tag set, a run or a batch."""

    tags: tuple[str, ...] = ()
    run: str | None = None
    batch: str | None = None
    created_at: str | None = None
    skip_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class ElectricEntry:
    """One plain Electric shape."""

    electric: str
    table: str
    where: str | None = None
    params: tuple[str, ...] = ()
    columns: tuple[str, ...] | None = None
    replica: str | None = None


@dataclass(frozen=True)
class Config:
    """What a configuration file declares."""

    trigger: tuple[TriggerEntry, ...] = ()
    electric: tuple[ElectricEntry, ...] = ()


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
    trigger, electric = [], []
    for number, entry in enumerate(entries, start=1):
        where = f"{path}: [[sync]] #{number}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a table")
        keys = set(entry)
        if "electric" in keys:
            extra = keys - _ELECTRIC_KEYS
            if extra or "table" not in keys:
                raise ConfigError(
                    f"{where}: an Electric shape takes electric, table, where, params, columns, "
                    f"replica{' (unknown: ' + ', '.join(sorted(extra)) + ')' if extra else ''}"
                )
            electric.append(
                ElectricEntry(
                    electric=_text(entry, "electric", where),
                    table=_text(entry, "table", where),
                    where=_text(entry, "where", where, required=False),
                    params=tuple(_texts(entry, "params", where)),
                    columns=tuple(_texts(entry, "columns", where)) if "columns" in entry else None,
                    replica=_text(entry, "replica", where, required=False),
                )
            )
            continue
        extra = keys - _TRIGGER_KEYS
        if extra:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        kinds = [k for k in ("tag", "tags", "run", "batch") if k in entry]
        if len(kinds) != 1:
            raise ConfigError(f"{where} needs exactly one of tag, tags, run, batch")
        tags: list[str] = []
        if "tag" in entry:
            tags = [t.strip() for t in _text(entry, "tag", where).split(",") if t.strip()]
        elif "tags" in entry:
            tags = _texts(entry, "tags", where)
        trigger.append(
            TriggerEntry(
                tags=tuple(tags),
                run=_text(entry, "run", where, required=False),
                batch=_text(entry, "batch", where, required=False),
                created_at=_text(entry, "created_at", where, required=False),
                skip_columns=tuple(_texts(entry, "skip_columns", where)),
            )
        )
    return Config(tuple(trigger), tuple(electric))


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
