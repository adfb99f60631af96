"""Who may read what through a shared cache: the proxy holds the token (the replicas hold
none, the proxy's token decides what the fleet reads), or each replica holds its own and the
cache is keyed on it, so that no reply fetched with one token is ever given to a caller
with another (another scope, other skipped columns, no token at all)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from replica.devserver import DevServer

from .fleet import runs_of, sync_once
from .nginx import TOKEN_AT_PROXY, TOKEN_PER_REPLICA, Nginx

TAG = "team:blue"


def payloads(db: Path) -> set[object]:
    return {row[3] for row in runs_of(db)}


def test_the_proxys_token_decides_what_a_fleet_without_tokens_reads(
    devserver: DevServer, nginx_factory: Callable[..., Nginx], tmp_path: Path
) -> None:
    wanted = {devserver.trigger("send-email", {"n": n}, tags=[TAG]) for n in range(3)}
    devserver.trigger("send-email", {}, tags=["team:red"])
    proxy_token = devserver.public_token([f"read:tags:{TAG}"])
    proxy = nginx_factory(TOKEN_AT_PROXY, devserver.url, token=proxy_token)

    through = sync_once(proxy.url, "held-by-the-proxy", TAG, tmp_path / "through.db")
    assert through.returncode == 0, through.stderr
    assert {row[0] for row in runs_of(tmp_path / "through.db")} == wanted
    # The placeholder is worth nothing upstream, and a secret key sent to the proxy is
    # replaced by the proxy's token too: its scope is all the fleet can read.
    direct = sync_once(devserver.url, "held-by-the-proxy", TAG, tmp_path / "direct.db")
    assert direct.returncode == 1
    assert "401" in direct.stderr
    other = sync_once(proxy.url, devserver.secret_key, "team:red", tmp_path / "other.db")
    assert other.returncode == 1
    assert "403" in other.stderr
    assert runs_of(tmp_path / "other.db") == frozenset()


def test_a_cache_keyed_on_the_credential_never_gives_one_tokens_replies_to_another(
    devserver: DevServer, nginx_factory: Callable[..., Nginx], tmp_path: Path
) -> None:
    for n in range(3):
        devserver.trigger("send-email", {"n": n}, tags=[TAG])
    proxy = nginx_factory(TOKEN_PER_REPLICA, devserver.url)
    reader = devserver.public_token([f"read:tags:{TAG}"])
    outsider = devserver.public_token(["read:tags:team:red"])
    # Same scope, but Trigger.dev leaves the payload out for this token.
    no_payloads = devserver.public_token(
        [f"read:tags:{TAG}"], skip_columns=["payload", "payloadType"]
    )

    first = sync_once(proxy.url, reader, TAG, tmp_path / "first.db")
    assert first.returncode == 0, first.stderr
    again = sync_once(proxy.url, reader, TAG, tmp_path / "again.db")
    assert again.returncode == 0, again.stderr
    assert runs_of(tmp_path / "again.db") == runs_of(tmp_path / "first.db")
    assert None not in payloads(tmp_path / "first.db")
    denied = sync_once(proxy.url, outsider, TAG, tmp_path / "outsider.db")
    skipped = sync_once(proxy.url, no_payloads, TAG, tmp_path / "skipped.db")
    # The snapshot request every replica sent, sent without a token.
    snapshots = [entry for entry in proxy.cache_statuses() if "offset=-1" in entry[2]]
    (uri,) = {uri for _, _, uri in snapshots}
    anonymous = httpx.get(proxy.url + uri)

    # The outsider is refused and holds nothing, the token without payloads gets none, the
    # caller without a token is refused: each went upstream with its own credential ...
    assert denied.returncode == 1
    assert "403" in denied.stderr
    assert runs_of(tmp_path / "outsider.db") == frozenset()
    assert skipped.returncode == 0, skipped.stderr
    assert payloads(tmp_path / "skipped.db") == {None}
    assert anonymous.status_code == 401
    # ... for the very URI whose reply the cache held: the second reader was answered from it.
    snapshots = [entry for entry in proxy.cache_statuses() if "offset=-1" in entry[2]]
    assert [(cache, status) for cache, status, _ in snapshots] == [
        ("MISS", 200),  # the first reader
        ("HIT", 200),  # the second reader, same token
        ("MISS", 403),  # the outsider
        ("MISS", 200),  # the token without payloads
        ("MISS", 401),  # no token
    ]
