"""Postgres array literals (`{1,2,NULL}`, `{{"a b",c},{d,e}}`) parsed into nested lists."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["parse_pg_array"]

_ARRAY_SPACE = " \t\n\r\v\f"  # what Postgres's array_isspace accepts, nothing more
MAX_DIMS = 6  # Postgres's MAXDIM
_BOUNDS_RE = re.compile(r"(?:\[[+-]?[0-9]+(?::[+-]?[0-9]+)?\])+[ \t\n\r\v\f]*=")
_UNQUOTED: dict[str, re.Pattern[str]] = {}


def _unquoted_pattern(delimiter: str) -> re.Pattern[str]:
    pattern = _UNQUOTED.get(delimiter)
    if pattern is None:
        if len(delimiter) != 1 or delimiter in '{}"\\' or delimiter in _ARRAY_SPACE:
            raise ValueError(f"{delimiter!r} cannot be an array delimiter")
        pattern = _UNQUOTED[delimiter] = re.compile(f'[^{{}}"\\\\{re.escape(delimiter)}]*')
    return pattern


def _skip_space(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in _ARRAY_SPACE:
        i += 1
    return i


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """The element whose opening quote is at `start`, and the index after its closing quote."""
    quote = text.find('"', start + 1)
    if quote < 0:
        raise ValueError(f"unterminated quoted element starting at position {start}")
    backslash = text.find("\\", start + 1, quote)
    if backslash < 0:
        return text[start + 1 : quote], quote + 1
    pieces = []
    i = start + 1
    while backslash >= 0:
        pieces.append(text[i:backslash])
        if backslash + 1 >= len(text):
            raise ValueError(f"unterminated quoted element starting at position {start}")
        pieces.append(text[backslash + 1])
        i = backslash + 2
        if i > quote:
            # The escaped character was the quote we took for the end: look further. Only
            # then, so that the text is scanned once (linear time).
            quote = text.find('"', i)
            if quote < 0:
                raise ValueError(f"unterminated quoted element starting at position {start}")
        backslash = text.find("\\", i, quote)
    pieces.append(text[i:quote])
    return "".join(pieces), quote + 1


def _read_unquoted(text: str, start: int, pattern: re.Pattern[str]) -> tuple[str | None, int]:
    """The element (None for NULL) starting at `start`, and the index of what ends it."""
    end = pattern.match(text, start).end()  # type: ignore[union-attr]  # `*` always matches
    pieces = None
    while end < len(text) and text[end] == "\\":
        if end + 1 >= len(text):
            raise ValueError("unterminated array: missing '}'")
        if pieces is None:
            pieces = []
        pieces += (text[start:end], text[end + 1])
        start = end + 2
        end = pattern.match(text, start).end()  # type: ignore[union-attr]
    if end >= len(text):
        raise ValueError("unterminated array: missing '}'")
    if text[end] in '{"':
        raise ValueError(f"unexpected {text[end]!r} inside an unquoted element at position {end}")
    # Surrounding whitespace is not part of an unquoted element (escaped whitespace is).
    token = text[start:end].rstrip(_ARRAY_SPACE)
    if pieces is not None:
        return "".join(pieces) + token, end
    if not token:
        raise ValueError(f"empty unquoted element at position {start}")
    if len(token) == 4 and token.isascii() and token.upper() == "NULL":
        return None, end
    return token, end


def _parse_flat(
    inner: str, element: Callable[[str], Any] | None, delimiter: str
) -> list[Any] | None:
    """Fast path for the common one-dimensional literal without quotes or escapes.

    None means "not that simple": the full parser then decides (and words any error).
    """
    if '"' in inner or "\\" in inner or "{" in inner or "}" in inner:
        return None
    items: list[Any] = [item.strip(_ARRAY_SPACE) for item in inner.split(delimiter)]
    if len(items) == 1 and not items[0]:
        return []
    if "" in items:
        return None
    for index, item in enumerate(items):
        if len(item) == 4 and item.isascii() and item.upper() == "NULL":
            items[index] = None
        elif element is not None:
            items[index] = element(item)
    return items


def parse_pg_array(
    text: str, element: Callable[[str], Any] | None = None, *, delimiter: str = ","
) -> list[Any]:
    """Parse a Postgres array literal such as `{1,2,NULL}` or `{{"a b",c},{d,e}}`.

    Nested dimensions give nested lists; unquoted NULL (any case) gives None, quoted "NULL" the
    string. `element` converts each non-null element. A leading bounds decoration
    (`[0:2]={...}`) is accepted and ignored. `delimiter` is `;` for the `box` type. Raises
    `ValueError` saying where a malformed literal goes wrong. Runs in linear time.
    """
    unquoted = _unquoted_pattern(delimiter)
    if text[:1] == "{" and text[-1:] == "}":
        flat = _parse_flat(text[1:-1], element, delimiter)
        if flat is not None:
            return flat
    n = len(text)
    i = _skip_space(text, 0)
    if text.startswith("[", i):
        bounds = _BOUNDS_RE.match(text, i)
        if bounds is None:
            raise ValueError(f"malformed dimension decoration at position {i}")
        i = _skip_space(text, bounds.end())
    if not text.startswith("{", i):
        raise ValueError(f"an array literal must start with '{{' (position {i})")
    root: list[Any] = []
    stack = [root]
    # Per depth: what the lists there hold (0 nothing yet, 1 elements, 2 sub-arrays) and their
    # length; every list at one depth must agree (Postgres arrays are rectangular).
    kinds = [0]
    lengths = [-1]
    i += 1
    expecting = True  # an element or sub-array (or, right after '{', a '}')
    opened = True
    while True:
        i = _skip_space(text, i)
        if i >= n:
            raise ValueError("unterminated array: missing '}'")
        char = text[i]
        if expecting and not (opened and char == "}"):
            depth = len(stack) - 1
            if char == "{":
                if kinds[depth] == 1 or depth + 1 >= MAX_DIMS:
                    raise _shape_error(kinds[depth] == 1, i)
                kinds[depth] = 2
                child: list[Any] = []
                stack[-1].append(child)
                stack.append(child)
                if len(kinds) == depth + 1:
                    kinds.append(0)
                    lengths.append(-1)
                opened = True
                i += 1
                continue
            if kinds[depth] == 2:
                raise _shape_error(True, i)
            kinds[depth] = 1
            if char == '"':
                item, i = _read_quoted(text, i)
            else:
                item, i = _read_unquoted(text, i, unquoted)
            if item is not None and element is not None:
                item = element(item)
            stack[-1].append(item)
            expecting = opened = False
        elif char == delimiter and not expecting:
            expecting = True
            i += 1
        elif char == "}":
            depth = len(stack) - 1
            size = len(stack.pop())
            if lengths[depth] < 0:
                lengths[depth] = size
            elif lengths[depth] != size:
                raise ValueError(
                    f"sub-arrays at depth {depth} differ in length "
                    f"({lengths[depth]} and {size}, at position {i}): arrays must be rectangular"
                )
            i += 1
            if not stack:
                break
            expecting = opened = False
        else:
            raise ValueError(f"expected {delimiter!r} or '}}' at position {i}, found {char!r}")
    i = _skip_space(text, i)
    if i != n:
        raise ValueError(f"unexpected text after the closing '}}' at position {i}")
    return root


def _shape_error(mixed: bool, position: int) -> ValueError:
    if mixed:
        return ValueError(
            f"elements and sub-arrays mixed at one level (position {position}): "
            "arrays must be rectangular"
        )
    return ValueError(f"more than {MAX_DIMS} dimensions (position {position})")
