"""What an upstream reply means when it is not a batch: a failure worth retrying, a typed
upstream error, a certificate problem; and error text cleaned of the request's secrets."""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from replica.errors import MalformedResponseError, UpstreamError, web_page_title
from replica.protocol.messages import MessageDecoder, load_json, load_messages
from replica.protocol.shape import SECRET_PARAMS, ShapeDefinition


class Retryable(Exception):
    """A failure worth retrying with back-off (network error, timeout, 429, 5xx)."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(reason)
        self.status = status
        self.retry_after = retry_after


@dataclass(slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    #: Empty when the body went to `decoder` as it arrived (a 200 reply).
    body: bytes
    url: str
    decoder: MessageDecoder | None = None

    def _streamed_to(self) -> MessageDecoder | None:
        """The decoder the body went to as it arrived, if it did."""
        return None if self.body else self.decoder

    @property
    def head(self) -> bytes:
        """The body, or its first bytes when it was decoded as it arrived: enough to say
        what it was in an error message."""
        decoder = self._streamed_to()
        return self.body if decoder is None else decoder.head

    def messages(self) -> Any:
        """The body decoded (see `messages.MessageDecoder`)."""
        decoder = self._streamed_to()
        return load_messages(self.body) if decoder is None else decoder.finish()


def certificate_problem(exc: BaseException) -> str | None:
    """What was wrong with the server's certificate, if that is why `exc` happened."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause.verify_message or cause.reason or str(cause)
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def without_secrets(body: bytes, shape: ShapeDefinition) -> bytes:
    """`body` without the shape's secrets (secret query parameters, the Authorization
    credential): see `redact`."""
    secrets = [str(v) for name, v in shape.params.items() if name in SECRET_PARAMS]
    return redact(body, [*secrets, *credentials(shape.headers)])


def credentials(headers: Any) -> list[str]:
    """The credential of an Authorization header among `headers` (`Bearer X` -> `X`)."""
    return [v.split(" ", 1)[-1] for k, v in headers.items() if k.lower() == "authorization"]


def redact(body: bytes, secrets: Iterable[str]) -> bytes:
    """`body` with each secret replaced by `***`: an error page may quote the request's URL
    or headers, and error text is shown, logged and stored. A secret is found as written
    and as sent in a query string (percent-encoded)."""
    for secret in secrets:
        if len(secret) >= 4:
            for form in {secret, str(httpx.QueryParams({"": secret}))[1:]}:
                body = body.replace(form.encode(), b"***")
    return body


def short_body(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace").strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def brief(body: bytes) -> str:
    """A reply's body for a one-line message: a web page by its title, text on one line."""
    text = short_body(body, 1000)
    page = web_page_title(text)
    if page is not None:
        return f"(a web page{page})"
    return short_body(" ".join(text.split()).encode())


def upstream_error(reply: Reply, url: str) -> UpstreamError:
    errors: dict[str, Any] = {}
    try:
        data = load_json(reply.body) if reply.body else None
    except MalformedResponseError:
        data = None
    if isinstance(data, dict):
        if isinstance(data.get("errors"), dict):
            errors = data["errors"]
        elif isinstance(data.get("error"), str):
            errors = {"error": [data["error"]]}
        elif isinstance(data.get("message"), str):
            errors = {"message": [data["message"]]}
    return UpstreamError(reply.status, url=url, body=short_body(reply.body, 1000), errors=errors)


def out_of_bounds(exc: UpstreamError) -> bool:
    if exc.status != 400:
        return False
    messages = exc.errors.get("offset")
    if isinstance(messages, list):
        return any("out of bounds" in str(m) for m in messages)
    return "out of bounds" in str(messages or "")
