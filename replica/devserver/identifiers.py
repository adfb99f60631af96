"""Postgres identifiers as Electric parses them: `schema.table` and column lists.

Quoted identifiers keep their case and may contain anything (`""` escapes a quote);
unquoted ones fold to lower case, as in Postgres.
"""

from __future__ import annotations


class IdentifierError(ValueError):
    """An identifier or identifier list that does not parse (message for the client)."""


def parse_relation(text: str) -> tuple[str, str]:
    """`schema.table` / `"Quoted"."Name"` / `table` -> (schema, table), like Postgres.

    Raises IdentifierError with Electric's wording for identifiers that do not parse.
    """
    parts: list[str] = []
    i, s = 0, text.strip()
    while i <= len(s):
        if i < len(s) and s[i] == '"':
            j, buf = i + 1, []
            while True:
                if j >= len(s):
                    raise IdentifierError(f"Invalid unterminated quoted identifier: {text}")
                if s[j] == '"':
                    if j + 1 < len(s) and s[j + 1] == '"':
                        buf.append('"')
                        j += 2
                        continue
                    break
                buf.append(s[j])
                j += 1
            if not buf:
                raise IdentifierError("Invalid zero-length delimited identifier")
            parts.append("".join(buf))
            i = j + 1
        else:
            j = s.find(".", i)
            j = len(s) if j < 0 else j
            ident = s[i:j].strip()
            if not ident:
                raise IdentifierError(f"Invalid table name: {text!r}")
            parts.append(ident.lower())
            i = j
        if i >= len(s):
            break
        if s[i] != ".":
            raise IdentifierError(f"Invalid table name: {text!r}")
        i += 1
    if len(parts) == 1:
        return ("public", parts[0])
    if len(parts) == 2:
        return (parts[0], parts[1])
    raise IdentifierError(f"Invalid table name: {text!r}")


def parse_columns(text: str) -> list[str]:
    """`id,"Status-Check"` -> names; quoted keep case (`""` escapes), unquoted fold to lower."""
    names: list[str] = []
    i = 0
    while i <= len(text):
        if i < len(text) and text[i] == '"':
            j, buf = i + 1, []
            while True:
                if j >= len(text):
                    raise IdentifierError(f"Invalid unterminated quoted identifier: {text}")
                if text[j] == '"':
                    if j + 1 < len(text) and text[j + 1] == '"':
                        buf.append('"')
                        j += 2
                        continue
                    break
                buf.append(text[j])
                j += 1
            if not buf:
                raise IdentifierError("Invalid zero-length delimited identifier")
            names.append("".join(buf))
            i = j + 1
            if i < len(text) and text[i] != ",":
                raise IdentifierError(f"Invalid identifier list: {text}")
        else:
            j = text.find(",", i)
            j = len(text) if j < 0 else j
            ident = text[i:j].strip()
            if not ident:
                raise IdentifierError("Invalid zero-length delimited identifier")
            names.append(ident.lower())
            i = j
        i += 1
    return names
