"""Replicas ask for a position with one URL, whoever they are: nothing of the replica (its
database, its token) is in it, so a shared cache answers any replica from the same entries.
The Trigger.dev token goes in the Authorization header; Electric reads its secret only from
the `secret` query parameter (`plug/router.ex` `authenticate/2`), so there it is part of the
URL, and of the cache key, like a token would be.

The proxy's access log shows the URIs each replica sent; replicas run one after the other.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from replica.devserver import DevServer

from .fleet import replica_env, sync_once
from .nginx import TOKEN_PER_REPLICA, Nginx

TAG = "fleet:urls"


def uris_of(proxy: Nginx, since: int) -> list[str]:
    return [uri for _, _, uri in proxy.cache_statuses()[since:]]


def test_replicas_with_other_tokens_and_files_send_the_same_urls(
    devserver_factory: Callable[..., DevServer],
    nginx_factory: Callable[..., Nginx],
    tmp_path: Path,
) -> None:
    # Several chunks, so that there is more than one URL to compare; one tag window for the
    # whole test (by default it moves every minute, and with it the feed's shape and handle).
    server = devserver_factory(chunk_rows=2, created_at_bucket=1e9)
    for n in range(5):
        server.trigger("send-email", {"n": n}, tags=[TAG])
    proxy = nginx_factory(TOKEN_PER_REPLICA, server.url)
    tokens = [server.secret_key, server.public_token([f"read:tags:{TAG}"])]
    sent = []
    for n, token in enumerate(tokens):
        before = len(proxy.cache_statuses())
        result = sync_once(proxy.url, token, TAG, tmp_path / f"replica-{n}.db")
        assert result.returncode == 0, result.stderr
        sent.append(uris_of(proxy, before))
    assert len(sent[0]) >= 3
    assert sent[0] == sent[1]
    assert not any(token in uri for token in tokens for uri in sent[0])


def test_electric_takes_its_secret_in_the_url_so_it_is_part_of_the_cache_key(
    devserver_factory: Callable[..., DevServer],
    nginx_factory: Callable[..., Nginx],
    tmp_path: Path,
) -> None:
    server = devserver_factory(electric_secret="s3cret")
    server.define_table("items", {"id": "int4", "title": "text"}, primary_key="id")
    server.insert("items", {"id": 1, "title": "a"})
    proxy = nginx_factory(TOKEN_PER_REPLICA, server.url)
    sent = []
    for n in range(2):
        before = len(proxy.cache_statuses())
        env = {**replica_env(proxy.url, "unused"), "ELECTRIC_SECRET": "s3cret"}
        db = tmp_path / f"replica-{n}.db"
        args = ["sync", "--electric", proxy.url, "--table", "items", "--once", "--db", str(db)]
        result = subprocess.run(
            [sys.executable, "-m", "replica", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        sent.append(uris_of(proxy, before))
    assert sent[0] == sent[1]
    assert all("secret=s3cret" in uri for uri in sent[0])
    # The second replica was answered from the cache.
    assert [cache for cache, _, _ in proxy.cache_statuses()[len(sent[0]) :]] == ["HIT"] * len(
        sent[1]
    )
