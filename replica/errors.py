"""Every error replica raises, in one place.

Each error says what failed, with which input, and what to do about it: `str(err)` is a
complete sentence for a log line or an `Error:` line, and `err.advice` is the advice alone,
worded for the interface it comes from: the `replica` command names its options (`--db`),
the Python API its parameters.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping
from typing import Any

#: True in the `replica` command: advice then names its options (`--db`), not the Python
#: API's parameters (`Replica(path)`). Set once by the command line as it starts.
speaks_cli = False


class ReplicaError(Exception):
    """Base class of every error replica raises on purpose."""

    #: What the user can do about it; shown after the message.
    hint: str = ""
    #: The same advice where the command line says it differently (names an option).
    cli_hint: str | None = None

    def __init__(
        self, message: str, *, hint: str | None = None, cli_hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint
            self.cli_hint = cli_hint

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Advice of its own replaces the parent's on the command line too: without this,
        # QueryRefusedError's "queries are read-only" would print as DatabaseError's
        # "check the --db path".
        if "hint" in cls.__dict__ and "cli_hint" not in cls.__dict__:
            cls.cli_hint = None

    @property
    def advice(self) -> str:
        """The hint, worded for the interface in use (see `speaks_cli`)."""
        if speaks_cli and self.cli_hint:
            return self.cli_hint
        return self.hint

    def __str__(self) -> str:
        advice = self.advice
        return f"{self.message} ({advice})" if advice else self.message


# -- configuration and input ------------------------------------------------------------


class ShapeDefinitionError(ReplicaError, ValueError):
    """A shape definition cannot be sent: a reserved parameter, bad `params`, no URL."""

    hint = "fix the shape definition; nothing was requested"


class InvalidPositionError(ReplicaError, ValueError):
    """A stored sync position is not one the protocol can resume from."""

    hint = "the shape will be fetched again from the start"


# -- talking to the upstream ------------------------------------------------------------


class ProtocolError(ReplicaError):
    """The upstream's answer could not be used. `url` is the request, secrets removed."""

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        hint: str | None = None,
        cli_hint: str | None = None,
    ):
        super().__init__(message, hint=hint, cli_hint=cli_hint)
        self.url = url


class UpstreamError(ProtocolError):
    """The upstream refused the request with a status that retrying will not fix (4xx).

    `status` is the HTTP status, `body` the (truncated) response text and `errors` the
    per-field messages of an Electric validation error, if any.
    """

    def __init__(
        self,
        status: int,
        *,
        url: str | None = None,
        body: str = "",
        errors: Mapping[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.errors = dict(errors or {})
        page = web_page_title(body)
        if page is not None:
            # A web server's error page, not an API's answer: the URL is wrong.
            super().__init__(
                f"upstream answered HTTP {status} with a web page{page}, not a shape API reply",
                url=url,
                hint="check api_url, or the Electric URL",
                cli_hint="check --api-url, or the --electric URL",
            )
            return
        detail = _describe_errors(self.errors) or " ".join(body.split())[:300] or "no details"
        super().__init__(
            f"upstream refused the shape request with HTTP {status}: {detail}",
            url=url,
            hint=_STATUS_HINTS.get(status, "check the shape definition and the token"),
            cli_hint=_STATUS_HINTS_CLI.get(status),
        )


def web_page_title(body: str) -> str | None:
    """` ("<title>")` of an HTML page (empty if untitled), or None if `body` is no page."""
    head = body.lstrip()[:200].lower()
    if not head.startswith(("<!doctype html", "<html", "<head", "<body")):
        return None
    match = re.search(r"<title[^>]*>([^<]{1,120})", body, re.IGNORECASE)
    title = " ".join(match.group(1).split()) if match else ""
    return f" ({title!r})" if title else ""


_STATUS_HINTS = {
    400: "the shape definition is invalid for this server; fix it and sync again",
    401: "the token is missing, invalid or expired; set a valid one",
    403: "the token is valid but lacks a scope for this shape; mint one with access to it",
    404: "the run, batch or route does not exist on this server; check the id and api_url",
}
_STATUS_HINTS_CLI = {
    404: "the run, batch or route does not exist on this server; check the id and --api-url",
}


def _describe_errors(errors: Mapping[str, Any]) -> str:
    parts = []
    for field, messages in errors.items():
        if isinstance(messages, Mapping):
            parts.append(f"{field}: {_describe_errors(messages)}")
        elif isinstance(messages, list):
            parts.append(f"{field}: {'; '.join(str(m) for m in messages)}")
        else:
            parts.append(f"{field}: {messages}")
    return ", ".join(parts)


class MissingHeadersError(ProtocolError):
    """A successful response lacks headers the protocol needs; never retried."""

    def __init__(self, missing: list[str], *, url: str | None = None) -> None:
        self.missing = missing
        super().__init__(
            f"the upstream response lacks required headers: {', '.join(missing)}",
            url=url,
            hint=(
                "a proxy or CDN in front of the server is probably stripping them; pass the "
                "electric-* headers through (and list them in access-control-expose-headers)"
            ),
        )


class MalformedResponseError(ProtocolError):
    """The response body or a header is not valid shape-protocol data."""

    hint = "the batch was not applied; it will be retried, report it if it persists"


class ValueParseError(MalformedResponseError):
    """A column value does not parse as its declared Postgres type."""

    def __init__(self, column: str, pg_type: str, value: object, reason: str = "") -> None:
        self.column = column
        self.pg_type = pg_type
        self.value = value
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        why = f": {reason}" if reason else ""
        super().__init__(
            f"column {column!r} ({pg_type}) has a value that does not parse: {shown}{why}"
        )


class StaleResponseError(ProtocolError):
    """Caches kept serving responses of an expired shape handle after every cache-buster."""

    hint = (
        "a proxy or CDN ignores the cache-buster query parameter; configure it to include "
        "the whole query string in its cache key"
    )


class FastLoopError(ProtocolError):
    """The client kept asking for the same offset in a tight loop and gave up."""

    hint = "the server keeps sending the same position back; check any proxy in between"


class CertificateError(ProtocolError):
    """The upstream's TLS certificate could not be verified; never retried."""

    hint = (
        "fix the server's certificate, or name the CA that signed it with SSL_CERT_FILE; "
        "verify=False skips verification (only for servers you trust)"
    )
    cli_hint = (
        "fix the server's certificate, or name the CA that signed it with SSL_CERT_FILE; "
        "--insecure skips verification (only for servers you trust)"
    )


class RetriesExhaustedError(ProtocolError):
    """A retryable failure outlasted the configured retry limit; the cause is chained."""

    hint = "the upstream is unreachable or overloaded; try again later"


# -- the local database -----------------------------------------------------------------


class DatabaseError(ReplicaError):
    """The local SQLite database cannot be opened, migrated or written."""

    hint = "check the database path, its permissions and free disk space"
    cli_hint = "check the --db path, its permissions and free disk space"


class DatabaseLockedError(DatabaseError):
    """Another replica process is already writing to this database file."""

    hint = "stop the other process first, or use another database file"
    cli_hint = "stop the other process first, or use another --db"


class ApplyError(DatabaseError):
    """A batch broke a rule of the local schema (e.g. a required column missing); it was
    rolled back and nothing of it was written."""

    hint = "the batch will be retried; if it persists, the upstream sends rows replica cannot store"


class QueryRefusedError(DatabaseError):
    """A query tried to change the replica or reach outside it."""

    hint = "queries are read-only: query the replica, do not change it"


class ReadOnlyViewError(QueryRefusedError, sqlite3.OperationalError):
    """A write through the read-only sqlite-utils view (`Replica.sqlite_utils()`) was
    refused. It is also the `sqlite3.OperationalError` that sqlite-utils code expects."""

    hint = (
        "the view only reads: replica sync is the replica's one writer, and a write around "
        "it would bypass its change log, shape membership and positions"
    )
