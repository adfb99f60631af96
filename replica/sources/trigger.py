"""What to subscribe to on Trigger.dev: the three Realtime run feeds as shape definitions.

One run (`/realtime/v1/runs/{run_id}`), runs with all of some tags (`/realtime/v1/runs?tags=`)
and the runs of a batch (`/realtime/v1/batches/{batch_id}`) — trigger-realtime.md §1.1-1.4.
Inputs are checked here, before anything is requested, so mistakes fail with a clear
`ShapeDefinitionError` rather than a 400 from the server.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Final
from urllib.parse import quote, urlsplit

from replica._version import __version__
from replica.errors import ShapeDefinitionError
from replica.protocol.shape import ShapeDefinition

__all__ = [
    "ELECTRIC_VERSION",
    "SKIPPABLE_COLUMNS",
    "TRIGGER_API_VERSION",
    "TriggerConfig",
    "batch_shape",
    "check_batch_id",
    "check_duration",
    "check_run_id",
    "check_skip_columns",
    "check_tags",
    "run_shape",
    "tag_shape",
]

#: Sent as `x-trigger-api-version`; without the current one the server rewrites `DEQUEUED`
#: statuses to `EXECUTING` in every body.
TRIGGER_API_VERSION: Final = "2025-07-16"
#: Sent as `x-trigger-electric-version`; its presence (not its value) selects the modern
#: Electric header names (`electric-handle`, `electric-offset`).
ELECTRIC_VERSION: Final = "1.0.0-beta.1"

#: Columns a feed may leave out (`RealtimeRunSkipColumns` of the SDK).
SKIPPABLE_COLUMNS: Final = frozenset(
    {
        "startedAt",
        "delayUntil",
        "queuedAt",
        "expiredAt",
        "completedAt",
        "number",
        "isTest",
        "usageDurationMs",
        "costInCents",
        "baseCostInCents",
        "ttl",
        "payload",
        "payloadType",
        "metadata",
        "output",
        "outputType",
        "runTags",
        "error",
    }
)
_NEVER_SKIPPED: Final = frozenset({"id", "taskIdentifier", "friendlyId", "status", "createdAt"})
#: The `runs` columns whose names differ from the skippable `TaskRun` column they come from.
_RUNS_COLUMNS: Final = {
    "finished_at": "completedAt",
    "delayed_until": "delayUntil",
    "duration_ms": "usageDurationMs",
    "tags": "runTags",
}

_RUN_ID_RE = re.compile(r"run_[A-Za-z0-9]+")
_BATCH_ID_RE = re.compile(r"batch_[A-Za-z0-9]+")
# The server refuses control characters, backslashes and double quotes in tags (§1.3).
_BAD_TAG_CHAR_RE = re.compile(r'[\x00-\x1f\x7f\\"]')
_MAX_TAG_LENGTH: Final = 128
_DURATION_RE = re.compile(r"(?:[0-9]+(?:w|d|hr|h|m|s))+")
_DURATION_PART_RE = re.compile(r"([0-9]+)(hr|w|d|h|m|s)")


class _RedactedHeaders(dict[str, str]):
    """Request headers whose repr hides the bearer token (shape definitions get logged)."""

    def __repr__(self) -> str:
        shown = {k: ("Bearer ***" if k.lower() == "authorization" else v) for k, v in self.items()}
        return repr(shown)


@dataclass(frozen=True)
class TriggerConfig:
    """How to reach a Trigger.dev API: its URL, a token and, for preview branches, the branch.

    `token` is an environment secret key (`tr_dev_...`, `tr_prod_...`) or a Public Access
    Token (JWT); it is never shown in `repr`. `api_url` must be http(s); a trailing slash is
    dropped.
    """

    token: str = field(repr=False)
    _: KW_ONLY
    api_url: str = "https://api.trigger.dev"
    branch: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.token, str) or not self.token.strip():
            raise ShapeDefinitionError(
                "the Trigger.dev token is empty",
                hint="set TRIGGER_SECRET_KEY or TRIGGER_ACCESS_TOKEN",
            )
        if any(c in self.token for c in "\r\n\0") or self.token != self.token.strip():
            raise ShapeDefinitionError(
                "the Trigger.dev token contains whitespace or control characters",
                hint="check how the token was copied (a trailing newline from a file?)",
            )
        url = self.api_url.rstrip("/") if isinstance(self.api_url, str) else ""
        scheme, netloc, _, query, fragment = urlsplit(url)
        if scheme not in ("http", "https") or not netloc or query or fragment:
            raise ShapeDefinitionError(
                f"the Trigger.dev API URL must be an http(s) URL without a query, got "
                f"{self.api_url!r}",
                hint="for example https://api.trigger.dev or http://localhost:3030",
            )
        object.__setattr__(self, "api_url", url)
        if self.branch is not None and (
            not isinstance(self.branch, str) or not self.branch.strip() or "\n" in self.branch
        ):
            raise ShapeDefinitionError(f"the preview branch name {self.branch!r} is not usable")

    def headers(self) -> dict[str, str]:
        """The headers every Trigger.dev request carries (the repr of the dict hides the token)."""
        headers = _RedactedHeaders(
            {
                "Authorization": f"Bearer {self.token}",
                "x-trigger-electric-version": ELECTRIC_VERSION,
                "x-trigger-api-version": TRIGGER_API_VERSION,
                "user-agent": f"replica/{__version__}",
            }
        )
        if self.branch is not None:
            headers["x-trigger-branch"] = self.branch
        return headers


def _names(values: Sequence[str] | str, what: str) -> list[str]:
    # A lone string is one name, not a sequence of characters.
    items = [values] if isinstance(values, str) else list(values)
    for item in items:
        if not isinstance(item, str):
            raise ShapeDefinitionError(f"{what} must be strings, got {item!r}")
    return items


def _wire_name(column: str) -> str:
    """A `TaskRun` column named as the server does (`startedAt`) or as the `runs` table does
    (`started_at`), as the server names it."""
    if column in _RUNS_COLUMNS:
        return _RUNS_COLUMNS[column]
    head, *rest = column.split("_")
    camel = head + "".join(part.capitalize() for part in rest)
    known = SKIPPABLE_COLUMNS | _NEVER_SKIPPED | {"updatedAt"}
    return camel if camel in known else column


def check_skip_columns(skip_columns: Sequence[str] | str) -> tuple[str, ...]:
    """The `TaskRun` columns a feed leaves out, checked, sorted and without repeats; a
    column may be named as the server does (`startedAt`) or as `runs` does (`started_at`)."""
    columns = sorted({_wire_name(c) for c in _names(skip_columns, "skip columns")})
    for column in columns:
        if column == "updatedAt":
            raise ShapeDefinitionError(
                "the column 'updatedAt' cannot be skipped",
                hint="replica needs it to know which version of a run is newest, as the SDK does",
            )
        if column in _NEVER_SKIPPED:
            raise ShapeDefinitionError(
                f"the column {column!r} cannot be skipped: the server always sends it",
                hint="leave it out of the skip list",
            )
        if column not in SKIPPABLE_COLUMNS:
            raise ShapeDefinitionError(
                f"{column!r} is not a column that can be skipped",
                hint=f"skippable columns: {', '.join(sorted(SKIPPABLE_COLUMNS))}",
            )
    for data, kind in (("payload", "payloadType"), ("output", "outputType")):
        if kind in columns and data not in columns:
            raise ShapeDefinitionError(
                f"skipping {kind!r} but not {data!r} would leave the {data} undecodable",
                hint=f"skip both {data!r} and {kind!r}, or neither",
            )
    return tuple(columns)


def _skip_param(skip_columns: Sequence[str] | str) -> dict[str, str]:
    columns = check_skip_columns(skip_columns)
    return {"skipColumns": ",".join(columns)} if columns else {}


def _shape(config: TriggerConfig, path: str, params: dict[str, str]) -> ShapeDefinition:
    if not isinstance(config, TriggerConfig):
        raise ShapeDefinitionError(f"expected a TriggerConfig, got {type(config).__name__}")
    return ShapeDefinition(url=config.api_url + path, params=params, headers=config.headers())


def _check_id(value: object, pattern: re.Pattern[str], what: str, example: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ShapeDefinitionError(
            f"{value!r} is not a {what} id: expected the public id, like {example!r}",
            hint=(
                f"use the id Trigger.dev shows and returns ({example.split('_')[0]}_...), "
                "not the internal database id"
            ),
        )
    return value


def check_run_id(run_id: object) -> str:
    """A public run id (`run_...`), or `ShapeDefinitionError`."""
    return _check_id(run_id, _RUN_ID_RE, "run", "run_cmek7q1xv0003l50ahz2b9r4d")


def check_batch_id(batch_id: object) -> str:
    """A public batch id (`batch_...`), or `ShapeDefinitionError`."""
    return _check_id(batch_id, _BATCH_ID_RE, "batch", "batch_cmek7x0pq0001l50a8d7f2k3z")


def run_shape(
    config: TriggerConfig, run_id: str, *, skip_columns: Sequence[str] = ()
) -> ShapeDefinition:
    """The feed of one run: `GET {api}/realtime/v1/runs/{run_id}` (`run_id` = `run_...`)."""
    run_id = check_run_id(run_id)
    path = f"/realtime/v1/runs/{quote(run_id, safe='')}"
    return _shape(config, path, _skip_param(skip_columns))


def batch_shape(
    config: TriggerConfig, batch_id: str, *, skip_columns: Sequence[str] = ()
) -> ShapeDefinition:
    """The runs of one batch: `GET {api}/realtime/v1/batches/{batch_id}` (`batch_...`)."""
    batch_id = check_batch_id(batch_id)
    path = f"/realtime/v1/batches/{quote(batch_id, safe='')}"
    return _shape(config, path, _skip_param(skip_columns))


def _check_tag(tag: str) -> str:
    if not tag:
        raise ShapeDefinitionError("a tag cannot be empty")
    if len(tag) > _MAX_TAG_LENGTH:
        raise ShapeDefinitionError(
            f"the tag {tag[:40]!r}... is {len(tag)} characters long; tags are at most "
            f"{_MAX_TAG_LENGTH}"
        )
    bad = _BAD_TAG_CHAR_RE.search(tag)
    if bad:
        raise ShapeDefinitionError(
            f"the tag {tag!r} contains {bad.group()!r}, which the server refuses in tags",
            hint="tags cannot hold control characters, backslashes or double quotes",
        )
    if "," in tag:
        raise ShapeDefinitionError(
            f"the tag {tag!r} contains a comma: tags are sent comma-separated, so it would be "
            "read as several tags",
            hint="pass several tags as a list (runs must have all of them)",
        )
    return tag


def check_duration(value: str) -> str:
    """A `created_at` window such as `1h30m` (`0s`: runs created from now on), or
    `ShapeDefinitionError`."""
    if not isinstance(value, str) or len(value) > 100 or not _DURATION_RE.fullmatch(value):
        raise ShapeDefinitionError(
            f"created_at must be a duration like '30m', '1h', '2d', '1w' or '1h30m' "
            f"(units w, d, h or hr, m, s), got {value!r}"
        )
    units = [unit.replace("hr", "h") for _, unit in _DURATION_PART_RE.findall(value)]
    if len(units) != len(set(units)):
        raise ShapeDefinitionError(
            f"created_at {value!r} repeats a unit; servers disagree on what that means",
            hint="write each unit once, e.g. '1h30m'",
        )
    return value  # "0s" too: runs created from now on, as the SDK takes it


def check_tags(tags: Sequence[str] | str) -> tuple[str, ...]:
    """The tags of a tag feed, checked, sorted and without repeats: the server's filter does
    not depend on their order, so one set of tags is one shape."""
    names = tuple(sorted({_check_tag(tag) for tag in _names(tags, "tags")}))
    if not names:
        raise ShapeDefinitionError(
            "a tag feed needs at least one tag", hint="name one, such as 'user:1234'"
        )
    return names


#: Seconds per unit of a `created_at` duration.
_UNIT_SECONDS: Final = {"w": 604800, "d": 86400, "hr": 3600, "h": 3600, "m": 60, "s": 1}
#: The widest window a tag feed gets from Trigger.dev unless it says otherwise
#: (`REALTIME_MAXIMUM_CREATED_AT_FILTER_AGE_IN_MS`), and its default window.
DEFAULT_WINDOW: Final = 24 * 3600.0
#: Tag-feed handles of Trigger.dev's native realtime backend pin the window's start (ms).
_NATIVE_TAG_HANDLE = re.compile(r"runs_([0-9]+)_")


def window_seconds(created_at: str | None) -> float:
    """The span of a tag feed's window: its `created_at` duration, else the default 24 h."""
    if created_at is None:
        return DEFAULT_WINDOW
    return float(
        sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART_RE.findall(created_at))
    )


def native_window_start(
    handle: str | None, handle_since: float, window: float, now: float
) -> float | None:
    """Where the window of a native-backend tag feed starts now (Unix time), or None for a
    handle of the Electric backend, whose window stays where it began.

    The native backend pins the start in the handle (`runs_<ms>_...`) and then clamps it to
    `now - max age` on every poll, so the window moves and runs created before its start stop
    being tracked, with no delete. The max age is the server's; the handle tells it when the
    server capped the asked-for `window` (made at `handle_since`), else it is the larger of
    the window and the default 24 h."""
    match = _NATIVE_TAG_HANDLE.match(handle or "")
    if match is None:
        return None
    pinned = int(match.group(1)) / 1000
    granted = handle_since - pinned  # the window the server gave when it made the handle
    capped = granted < window - 120  # (a minute of bucketing, a minute of slack)
    max_age = granted if capped else max(window, DEFAULT_WINDOW)
    return max(pinned, now - max_age)


def tag_shape(
    config: TriggerConfig,
    tags: Sequence[str] | str,
    *,
    created_at: str | None = None,
    skip_columns: Sequence[str] = (),
) -> ShapeDefinition:
    """Runs having *all* of `tags`: `GET {api}/realtime/v1/runs?tags=a,b&createdAt=...`.

    Tags are de-duplicated and sorted (the server's filter does not depend on their order,
    so one set of tags is one shape). `created_at` limits the feed to runs created within
    that duration before the first request (server default and cap: 24 h).
    """
    params = {"tags": ",".join(check_tags(tags)), **_skip_param(skip_columns)}
    if created_at is not None:
        params["createdAt"] = check_duration(created_at)
    return _shape(config, "/realtime/v1/runs", params)
