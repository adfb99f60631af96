"""Bearer auth of the Trigger.dev routes: secret keys and public access tokens (JWT HS256).

Tokens are verified with the environment's secret key, issuer `https://id.trigger.dev` and
audience `https://api.trigger.dev`, as the SDK's `generateJWT` signs them. Scopes follow the
grammar of trigger-realtime.md §1.1: `action:type[:id]` (only the first two colons split),
bare `admin`, type `all`, action `*`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

JWT_ISSUER = "https://id.trigger.dev"
JWT_AUDIENCE = "https://api.trigger.dev"

FORBIDDEN_BODY: dict[str, str] = {
    "error": "Unauthorized",
    "code": "unauthorized",
    "param": "access_token",
    "type": "authorization",
}


class AuthError(Exception):
    """Authentication failed: `status` and the JSON `body` to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"error": message}


@dataclass(frozen=True)
class Principal:
    """Who is calling: a secret key (everything allowed) or a public token with scopes."""

    kind: str  # "secret" or "jwt"
    scopes: tuple[str, ...] = ()
    claims: Mapping[str, Any] = field(default_factory=dict)

    @property
    def skip_columns(self) -> list[str] | None:
        """The `realtime.skipColumns` claim of a public token (it wins over the URL)."""
        realtime = self.claims.get("realtime")
        if isinstance(realtime, Mapping) and isinstance(realtime.get("skipColumns"), list):
            return [str(c) for c in realtime["skipColumns"]]
        return None

    def can(self, action: str, resources: Iterable[tuple[str, str | None]]) -> bool:
        """Whether any scope allows `action` on any of `resources` ((type, id) pairs)."""
        if self.kind == "secret":
            return True
        wanted = list(resources)
        for scope in self.scopes:
            if scope == "admin":
                return True
            parts = scope.split(":", 2)
            if len(parts) < 2:
                continue
            s_action, s_type = parts[0], parts[1]
            s_id = parts[2] if len(parts) == 3 else None
            if s_action not in ("*", action):
                continue
            for r_type, r_id in wanted:
                if s_type in ("all", r_type) and (s_id is None or s_id == r_id):
                    return True
        return False


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_jwt(
    secret_key: str,
    claims: Mapping[str, Any],
    *,
    expires_in: float | None = 3600,
    issued_at: float | None = None,
) -> str:
    """An HS256 token with `claims` plus issuer, audience, iat and exp."""
    now = int(issued_at if issued_at is not None else time.time())
    payload = {"iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "iat": now, **claims}
    if expires_in is not None:
        payload.setdefault("exp", now + int(expires_in))
    header = _b64(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
    body = _b64(orjson.dumps(payload))
    signature = hmac.new(secret_key.encode(), f"{header}.{body}".encode(), hashlib.sha256)
    return f"{header}.{body}.{_b64(signature.digest())}"


def public_token(
    secret_key: str,
    environment_id: str,
    scopes: Sequence[str],
    *,
    expires_in: float = 3600,
    skip_columns: Sequence[str] | None = None,
) -> str:
    """A public access token like the ones Trigger.dev mints (sub = environment, pub = true)."""
    claims: dict[str, Any] = {"sub": environment_id, "pub": True, "scopes": list(scopes)}
    if skip_columns:
        claims["realtime"] = {"skipColumns": list(skip_columns)}
    return sign_jwt(secret_key, claims, expires_in=expires_in)


def verify_jwt(token: str, secret_keys: Iterable[str]) -> dict[str, Any]:
    """The claims of a valid token signed with one of `secret_keys` (else AuthError 401)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise AuthError(401, "Public Access Token is invalid")
    try:
        header = orjson.loads(_unb64(parts[0]))
        claims = orjson.loads(_unb64(parts[1]))
        signature = _unb64(parts[2])
    except (ValueError, orjson.JSONDecodeError):
        raise AuthError(401, "Public Access Token is invalid") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
        raise AuthError(401, "Public Access Token is invalid")
    signed = f"{parts[0]}.{parts[1]}".encode()
    if not any(
        hmac.compare_digest(hmac.new(k.encode(), signed, hashlib.sha256).digest(), signature)
        for k in secret_keys
    ):
        raise AuthError(401, "Public Access Token is invalid")
    now = time.time()
    if isinstance(claims.get("exp"), (int, float)) and claims["exp"] < now:
        raise AuthError(401, "Public Access Token has expired")
    if claims.get("iss") != JWT_ISSUER or claims.get("aud") not in (
        JWT_AUDIENCE,
        [JWT_AUDIENCE],
    ):
        raise AuthError(401, "Public Access Token is invalid")
    if claims.get("pub") is not True:
        raise AuthError(401, "Public Access Token is invalid")
    return claims


class Authenticator:
    """The emulated environment's keys: checks `Authorization: Bearer ...` headers."""

    def __init__(self, secret_key: str, environment_id: str) -> None:
        self.secret_keys = [secret_key]
        self.environment_id = environment_id

    @property
    def secret_key(self) -> str:
        return self.secret_keys[0]

    def authenticate(self, authorization: str | None, *, allow_jwt: bool = True) -> Principal:
        """The caller behind an Authorization header, or AuthError(401)."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise AuthError(401, "Invalid or Missing API key")
        token = authorization[7:].strip()
        if token in self.secret_keys:
            return Principal("secret")
        if token.startswith("tr_"):
            raise AuthError(401, "Invalid API Key")
        if not allow_jwt:
            raise AuthError(401, "Invalid API Key")
        claims = verify_jwt(token, self.secret_keys)
        if claims.get("sub") != self.environment_id:
            raise AuthError(401, "Public Access Token is invalid")
        scopes = claims.get("scopes") or []
        if not isinstance(scopes, list):
            raise AuthError(401, "Public Access Token is invalid")
        return Principal("jwt", tuple(str(s) for s in scopes), claims)
