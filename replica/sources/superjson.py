"""Decoding superjson documents (`application/super+json` packets) into Python values.

The Trigger.dev SDK serialises payloads and outputs with the `superjson` npm library:
`{"json": <plain JSON>, "meta": {"values": <annotations>, "referentialEqualities": ..., "v": 1}}`.
`json` is what `JSON.stringify` could keep; the annotations say which parts were a Date, a
bigint, a Map, ... and `referentialEqualities` which paths held the same object.

What each annotation becomes here:

- `Date` → an aware UTC `datetime` (a date outside years 1-9999 stays its ISO string);
- `bigint` → an exact `int`;
- `map` → a `dict`, keys as decoded; a list of `[key, value]` pairs when a key is unhashable
  or two keys collide in Python although JavaScript tells them apart (`1` and `true`);
- `set` → a `list`, order kept;
- `undefined` → the key is removed from its object; `None` in arrays, Maps and Sets;
- `regexp` → the string `/source/flags`; `URL` → the URL string;
- `number` → `nan`, `inf`, `-inf` or `-0.0`;
- `Error` → a dict `{"name", "message"}` (plus whatever else was sent);
- `typed-array` → a list of numbers;
- `class`, `custom`, `symbol` (registered by the sender) → the plain JSON as sent.

Junk never raises: an annotation that cannot be applied (unknown type, a path that leads
nowhere, malformed meta) is skipped, leaving that part of the value as the plain JSON, and
reported through `on_problem` (by default a warning in this module's log). A shared reference
that would make a value contain itself is not restored (JSON cannot hold a cycle): the
position keeps the `null` superjson wrote there.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections.abc import Callable
from typing import Any

__all__ = ["decode", "parse_path"]

logger = logging.getLogger(__name__)

ProblemHandler = Callable[[str], None]


class _Undefined:
    """JavaScript's `undefined` while decoding; never returned to callers."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "undefined"


_UNDEFINED = _Undefined()


class _Map(list):  # type: ignore[type-arg]
    """A Map while decoding: its `[key, value]` pairs, still addressable by index paths."""

    __slots__ = ()


class _Set(list):  # type: ignore[type-arg]
    """A Set while decoding: its members, still addressable by index paths."""

    __slots__ = ()


class _Skip(Exception):
    """An annotation that cannot be applied; the message says why."""


# -- paths ------------------------------------------------------------------------------------


def parse_path(text: str, *, legacy: bool = False) -> list[str]:
    """Split a superjson path (`a.b.0`) into its keys.

    Since `meta.v` 1, `\\.` is a dot inside a key and `\\\\` a backslash; any other backslash
    escape is invalid (`ValueError`). Older documents (no `v`) escape only dots, and a lone
    backslash is literal.
    """
    if "\\" not in text:
        return text.split(".")
    keys: list[str] = []
    segment: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            following = text[i + 1] if i + 1 < n else ""
            if following == ".":
                segment.append(".")
                i += 2
                continue
            if not legacy:
                if following == "\\":
                    segment.append("\\")
                    i += 2
                    continue
                raise ValueError(f"invalid escape in path {text!r}")
        if char == ".":
            keys.append("".join(segment))
            segment = []
        else:
            segment.append(char)
        i += 1
    keys.append("".join(segment))
    return keys


def _step(node: Any, key: str) -> Any:
    """The child of a container at one path key."""
    if isinstance(node, dict):
        if key not in node:
            raise _Skip(f"no key {key!r}")
        return node[key]
    if isinstance(node, list):
        return node[_index(node, key)]
    raise _Skip(f"cannot step into {type(node).__name__} with key {key!r}")


def _index(node: list[Any], key: str) -> int:
    if not key.isdigit() or not key.isascii():
        raise _Skip(f"{key!r} is not an array index")
    index = int(key)
    if index >= len(node):
        raise _Skip(f"index {index} is out of range")
    return index


def _parent_of(root: Any, path: list[str]) -> Any:
    node = root
    for key in path[:-1]:
        node = _step(node, key)
    return node


def _set(container: Any, key: str, value: Any) -> None:
    if isinstance(container, dict):
        if key not in container:
            raise _Skip(f"no key {key!r}")
        container[key] = value
    elif isinstance(container, list):
        container[_index(container, key)] = value
    else:
        raise _Skip(f"cannot set {key!r} on {type(container).__name__}")


# -- single values ------------------------------------------------------------------------------

_JS_DATE_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.([0-9]{3})Z"
)
_NUMBERS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf, "-0": -0.0}


def _date(value: Any) -> Any:
    if not isinstance(value, str):
        raise _Skip(f"a Date must be a string, got {type(value).__name__}")
    match = _JS_DATE_RE.fullmatch(value)
    if match is None:
        # Years beyond 9999 come as "+010000-01-01T00:00:00.000Z": datetime cannot hold them.
        return value
    year, month, day, hour, minute, second, milli = (int(g) for g in match.groups())
    try:
        return dt.datetime(
            year, month, day, hour, minute, second, milli * 1000, tzinfo=dt.timezone.utc
        )
    except ValueError:
        return value


def _bigint(value: Any) -> int:
    text = value if isinstance(value, str) else None
    if text is None or not text.lstrip("-").isdigit() or not text.isascii():
        raise _Skip(f"a bigint must be a string of digits, got {value!r:.40}")
    return int(text)


def _number(value: Any) -> float:
    number = _NUMBERS.get(value) if isinstance(value, str) else None
    if number is None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _Skip(f"unknown special number {value!r:.40}")
    return number


def _typed_array(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _Skip("a typed array must be a list")
    out: list[Any] = []
    for item in value:
        if isinstance(item, str):
            special = _NUMBERS.get(item)
            # BigInt64Array elements are digit strings.
            out.append(special if special is not None else _bigint(item))
        else:
            out.append(item)
    return out


def _transform(value: Any, kind: Any) -> Any:
    """The value an annotation stands for, from its plain JSON form."""
    if isinstance(kind, list):
        name = kind[0] if kind else None
        if name == "typed-array":
            return _typed_array(value)
        if name in ("class", "custom", "symbol"):
            return value  # registered by the sender: its plain form is the best we have
        raise _Skip(f"unknown annotation {kind!r:.60}")
    if kind == "Date":
        return _date(value)
    if kind == "bigint":
        return _bigint(value)
    if kind == "map":
        if not isinstance(value, list) or not all(
            isinstance(pair, list) and len(pair) == 2 for pair in value
        ):
            raise _Skip("a Map must be a list of [key, value] pairs")
        return _Map(value)
    if kind == "set":
        if not isinstance(value, list):
            raise _Skip("a Set must be a list")
        return _Set(value)
    if kind == "undefined":
        return _UNDEFINED
    if kind in ("regexp", "URL"):
        if not isinstance(value, str):
            raise _Skip(f"a {kind} must be a string")
        return value
    if kind == "number":
        return _number(value)
    if kind == "Error":
        if not isinstance(value, dict):
            raise _Skip("an Error must be an object")
        return value
    raise _Skip(f"unknown annotation {kind!r:.60}")


# -- the document --------------------------------------------------------------------------------


def _copy(value: Any) -> Any:
    """A private copy of plain JSON, so annotations can be applied in place."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


class _Decoder:
    def __init__(self, root: Any, legacy: bool, on_problem: ProblemHandler) -> None:
        self.root = root
        self.legacy = legacy
        self.on_problem = on_problem

    def problem(self, what: str, why: str) -> None:
        self.on_problem(f"superjson: {what} was not applied ({why}); kept the plain JSON")

    # values ------------------------------------------------------------------------------

    def apply_values(self, tree: Any, path: list[str]) -> None:
        """Apply an annotation tree: `[type]`, `[type, {child path: tree}]` or `{path: tree}`.

        Children (paths relative to `path`) go first, while their containers are still plain.
        """
        if isinstance(tree, dict):
            self.apply_children(tree, path)
            return
        if not isinstance(tree, list) or not 1 <= len(tree) <= 2:
            self.problem(f"annotation at {_show(path)}", "it is not [type] or [type, children]")
            return
        if len(tree) == 2:
            if not isinstance(tree[1], dict):
                self.problem(f"annotation at {_show(path)}", "its children are not an object")
            else:
                self.apply_children(tree[1], path)
        try:
            if path:
                parent = _parent_of(self.root, path)
                _set(parent, path[-1], _transform(_step(parent, path[-1]), tree[0]))
            else:
                self.root = _transform(self.root, tree[0])
        except _Skip as exc:
            self.problem(f"{tree[0]!r:.60} at {_show(path)}", str(exc))

    def apply_children(self, children: dict[str, Any], path: list[str]) -> None:
        for key, subtree in children.items():
            try:
                child = parse_path(key, legacy=self.legacy)
            except ValueError as exc:
                self.problem(f"annotation path {key!r:.60}", str(exc))
                continue
            self.apply_values(subtree, path + child)

    # referential equalities ---------------------------------------------------------------

    def apply_equalities(self, annotations: Any) -> None:
        """`{path: [same paths]}`, or `[[paths equal to the root]]` / `[[...], {path: [...]}]`."""
        if isinstance(annotations, list):
            if annotations and isinstance(annotations[0], list):
                for text in annotations[0]:
                    # Only a value containing itself can equal the root: always a cycle.
                    self.problem(f"reference {text!r:.60} to the root", "it would be a cycle")
            if len(annotations) > 1:
                self.apply_equalities(annotations[1])
            return
        if not isinstance(annotations, dict):
            self.problem("referentialEqualities", "it is neither an object nor an array")
            return
        for source, targets in annotations.items():
            if not isinstance(targets, list):
                self.problem(f"references to {source!r:.60}", "they are not a list")
                continue
            try:
                value = self.root
                for key in parse_path(source, legacy=self.legacy):
                    value = _step(value, key)
            except (_Skip, ValueError) as exc:
                self.problem(f"references to {source!r:.60}", str(exc))
                continue
            for target in targets:
                self.link(value, target)

    def link(self, value: Any, target: Any) -> None:
        try:
            if not isinstance(target, str):
                raise _Skip("the path is not a string")
            path = parse_path(target, legacy=self.legacy)
            parent = _parent_of(self.root, path)
            _step(parent, path[-1])  # the position must exist
            if _contains(value, parent):
                raise _Skip("it would be a cycle")
            _set(parent, path[-1], value)
        except (_Skip, ValueError) as exc:
            self.problem(f"reference at {target!r:.60}", str(exc))


def _contains(value: Any, target: Any) -> bool:
    """Whether `target` is `value` or reachable from it (by identity)."""
    if not isinstance(value, dict | list):
        return False
    seen: set[int] = set()
    stack = [value]
    while stack:
        node = stack.pop()
        if node is target:
            return True
        if id(node) in seen:
            continue
        seen.add(id(node))
        children = node.values() if isinstance(node, dict) else node
        stack.extend(c for c in children if isinstance(c, dict | list))
    return False


def _show(path: list[str]) -> str:
    return repr(".".join(path)) if path else "the root"


def _finish(value: Any, memo: dict[int, Any]) -> Any:
    """Turn decoding-time stand-ins into final values, keeping shared references shared."""
    if not isinstance(value, dict | list):
        return None if value is _UNDEFINED else value
    done = memo.get(id(value))
    if done is not None:
        return done
    out: Any
    if isinstance(value, dict):
        out = memo[id(value)] = {}
        for key, item in value.items():
            if item is not _UNDEFINED:  # `{a: undefined}` has no key `a` in JavaScript terms
                out[key] = _finish(item, memo)
    elif isinstance(value, _Map):
        pairs = [(_finish(k, memo), _finish(v, memo)) for k, v in value]
        try:
            out = dict(pairs)
        except TypeError:
            out = None
        if out is None or len(out) != len(pairs):
            # Unhashable keys, or keys JavaScript tells apart and Python does not (1 and true).
            out = [[k, v] for k, v in pairs]
        memo[id(value)] = out
    else:
        out = memo[id(value)] = []
        out.extend(_finish(item, memo) for item in value)
    return out


def _warn(message: str) -> None:
    logger.warning("%s", message)


def decode(document: Any, *, on_problem: ProblemHandler | None = None) -> Any:
    """Decode a parsed superjson document (`{"json": ..., "meta": ...}`) into Python values.

    The input is not modified. A document without `meta` is returned as its `json` part; one
    that is not an object with a `json` key is returned as it is (reported as a problem).
    Problems are reported through `on_problem` (a warning in this module's log by default).
    """
    report = on_problem or _warn
    if not isinstance(document, dict) or "json" not in document:
        report("superjson: the document is not an object with a 'json' key; kept as it is")
        return document
    meta = document.get("meta")
    if meta is None:
        return document["json"]
    if not isinstance(meta, dict):
        report("superjson: 'meta' is not an object; kept the plain JSON")
        return document["json"]
    version = meta.get("v", 0)
    legacy = not (isinstance(version, int | float) and version >= 1)
    try:
        decoder = _Decoder(_copy(document["json"]), legacy, report)
        if meta.get("values") is not None:
            decoder.apply_values(meta["values"], [])
        if meta.get("referentialEqualities") is not None:
            decoder.apply_equalities(meta["referentialEqualities"])
        return _finish(decoder.root, {})
    except RecursionError:
        report("superjson: the document is nested too deeply; kept the plain JSON")
        return document["json"]
