"""Bad input to every command: one clear `Error:` line, the documented exit status, no
traceback, and nothing written.

Usage errors (wrong types and values, a missing token, a bad where clause) exit 2 before
anything is opened: the working directory stays empty. Failures at run time exit 1: a
database path that does not exist (no file is created), a directory or file that is
read-only for the user (nothing in it changes), an upstream that cannot be reached
(`--once` gives up after a few retries; no row and no change is written).

Read-only cases run as `nobody` when the suite runs as root (root ignores permissions).
tests/cli/test_sync_cli.py covers more usage errors of `sync`, `reset` and `query`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from replica.engine import ONCE_BACKOFF
from replica.store import Store

from .support import record, replica_command

AS_ROOT = os.geteuid() == 0
NOBODY = 65534


def run(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    other_user: bool = False,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    command = replica_command(*args)
    if other_user and AS_ROOT:
        # setpriv, not Popen(user=...): the interpreter lives under /root, which `nobody`
        # may not search; setpriv drops root only once the program is started.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: no other user to test with")
        ids = [f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        command = [setpriv, *ids, *command]
    return subprocess.run(
        command,
        cwd=cwd,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def clean_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRIGGER_", "REPLICA_"))}
    env.pop("ELECTRIC_SECRET", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return {**env, **values}


def one_error(result: subprocess.CompletedProcess[str], status: int) -> str:
    assert result.returncode == status, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.stderr
    assert "please report it" not in lines[0], lines[0]  # not an unexpected exception
    return lines[0]


def listing(directory: Path) -> dict[str, str]:
    """Every file under `directory` with a hash of its content."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="replica-bad-input-"))
    path.chmod(0o755)
    yield path
    for sub in [path, *path.rglob("*")]:
        if sub.is_dir():
            sub.chmod(0o755)
    shutil.rmtree(path)


TALLY = {"usage_errors": 0, "runtime_errors": 0}


def tally(kind: str) -> None:
    TALLY[kind] += 1
    record("bad input", **{kind: 1})


# -- usage errors: exit 2, nothing written --------------------------------------------------

USAGE = [
    (("--bogus",), "--bogus"),
    (("sync", "--tag", "a", "--detached", "sometimes"), "sometimes"),
    (("sync", "--electric", "ftp://x", "--table", "t"), "http(s)"),
    (("sync", "--electric", "http://x", "--table", "t", "--param", "1"), "without a where"),
    (("sync", "--electric", "http://x", "--table", "t", "--where", "id = 1; drop table t"), "t"),
    (("sync", "--electric", "http://x", "--table", "t", "--columns", ","), "column"),
    (("sync", "--electric", "http://x", "--table", " "), "table"),
    (("sync", "--api-url", "not a url", "--tag", "a"), "not a url"),
    (("sync", "--tag", "a", "--created-at", "-5h"), "created"),
    (("sync", "--batch", "run_123"), "batch"),
    (("sync", "--config", "missing.toml"), "missing.toml"),
    (("query",), "SQL"),
    (("query", "select 1", "--db"), "--db"),
    (("status", "extra"), "extra"),
    (("watch", "--since", "-1"), "-1"),
    (("watch", "--since", "soon"), "soon"),
    (("reset", "--all", "--shape", "tag a"), "--shape KEY or --all"),
    (("demo", "--duration", "-1"), "-1"),
    (("demo", "--speed", "0"), "0"),
    (("demo", "--seed", "x"), "x"),
    (("dev-server", "--port", "70000"), "70000"),
    (("dev-server", "--fault", "bogus"), "bogus"),
    (("dev-server", "--fault", "error:every=0"), "every"),
    (("dev-server", "--long-poll-timeout", "0"), "0"),
    (("dev-server", "--chunk-bytes", "0"), "0"),
]


@pytest.mark.parametrize(("args", "needle"), USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_usage_errors_exit_2_and_write_nothing(
    tmp_path: Path, args: tuple[str, ...], needle: str
) -> None:
    token = clean_env(TRIGGER_SECRET_KEY="tr_dev_usage_errors_0123456789")
    line = one_error(run(*args, cwd=tmp_path, env=token), 2)
    assert needle in line, line
    assert listing(tmp_path) == {}
    tally("usage_errors")


def test_a_missing_token_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    empty_file = tmp_path / "token.txt"
    cases: list[tuple[dict[str, str], tuple[str, ...], str]] = [
        (clean_env(), ("sync", "--tag", "a"), "TRIGGER_SECRET_KEY"),
        (clean_env(TRIGGER_SECRET_KEY="   "), ("sync", "--run", "run_abc"), "no Trigger.dev token"),
        (clean_env(TRIGGER_ACCESS_TOKEN=""), ("sync", "--batch", "batch_abc"), "TRIGGER_"),
        (clean_env(), ("sync", "--tag", "a", "--token-file", "nope.txt"), "nope.txt"),
        (clean_env(), ("sync", "--tag", "a", "--token-file", str(empty_file)), "empty"),
        (
            clean_env(TRIGGER_SECRET_KEY="tr_dev_a\nb"),
            ("sync", "--tag", "a"),
            "whitespace or control characters",
        ),
    ]
    for env, args, needle in cases:
        empty_file.write_text("\n")
        line = one_error(run(*args, cwd=tmp_path, env=env), 2)
        assert needle in line, (args, line)
        assert set(listing(tmp_path)) == {"token.txt"}
        tally("usage_errors")
    (tmp_path / "replica.toml").write_text('[[sync]]\ntag = "a"\n')
    line = one_error(run("sync", cwd=tmp_path, env=clean_env()), 2)
    assert "TRIGGER_SECRET_KEY" in line
    assert set(listing(tmp_path)) == {"token.txt", "replica.toml"}
    tally("usage_errors")


# -- missing and read-only databases: exit 1, nothing written ------------------------------


def test_a_missing_database_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "replica.db"
    for args in (
        ("status",),
        ("query", "select 1"),
        ("watch",),
        ("reset", "--all"),
    ):
        line = one_error(run(*args, "--db", str(missing), cwd=tmp_path), 1)
        assert "does not exist" in line, line
        tally("runtime_errors")
    env = clean_env(TRIGGER_SECRET_KEY="tr_dev_missing_database_0123456789")
    line = one_error(
        run("sync", "--tag", "a", "--once", "--db", str(missing), cwd=tmp_path, env=env), 1
    )
    assert f"the directory {missing.parent} does not exist" in line
    assert not missing.parent.exists()
    assert listing(tmp_path) == {}
    tally("runtime_errors")


def make_replica(path: Path) -> None:
    with Store(path) as store:
        store.register_shape("tag:a", kind="tag", target="runs")


def test_a_read_only_directory_or_file_is_an_error_and_stays_as_it_was(shared_dir: Path) -> None:
    env = clean_env(TRIGGER_SECRET_KEY="tr_dev_read_only_0123456789", REPLICA_DB="replica.db")
    # A directory this user cannot write, with no database yet.
    empty = shared_dir / "empty"
    empty.mkdir(mode=0o555)
    empty.chmod(0o555)
    line = one_error(run("sync", "--tag", "a", "--once", cwd=empty, env=env, other_user=True), 1)
    assert "is not writable by this user" in line, line
    assert listing(empty) == {}
    tally("runtime_errors")

    # A database readable by this user, in a directory it cannot write.
    locked = shared_dir / "locked"
    locked.mkdir()
    make_replica(locked / "replica.db")
    (locked / "replica.db").chmod(0o644)
    locked.chmod(0o555)
    before = listing(locked)
    for args, needle in (
        (("sync", "--tag", "a", "--once"), "is not writable by this user"),
        (("reset", "--all"), "replica.db-shm"),  # it checks it can read the file first
        (("status",), "replica.db-shm"),
        (("query", "select count(*) from runs"), "replica.db-shm"),
        (("watch",), "replica.db-shm"),
    ):
        line = one_error(run(*args, cwd=locked, env=env, other_user=True), 1)
        assert needle in line, (args, line)
        tally("runtime_errors")
    assert listing(locked) == before

    # A database file this user may read but not write, in a directory it can write.
    open_dir = shared_dir / "open"
    open_dir.mkdir()
    make_replica(open_dir / "replica.db")
    (open_dir / "replica.db").chmod(0o644)
    open_dir.chmod(0o777)
    before = listing(open_dir)
    for args in (("sync", "--tag", "a", "--once"), ("reset", "--all")):
        line = one_error(run(*args, cwd=open_dir, env=env, other_user=True), 1)
        assert "is read-only for this user" in line, (args, line)
        tally("runtime_errors")
    after = listing(open_dir)
    assert after["replica.db"] == before["replica.db"]
    # Reading works there: SQLite can make the -shm file it needs.
    result = run("query", "select count(*) from runs", cwd=open_dir, env=env, other_user=True)
    assert result.returncode == 0, result.stderr

    # A database other users may not read at all (the mode replica creates it with).
    private = shared_dir / "private"
    private.mkdir(mode=0o755)
    private.chmod(0o755)
    make_replica(private / "replica.db")
    if AS_ROOT or os.geteuid() != (private / "replica.db").stat().st_uid:
        line = one_error(run("query", "select 1", cwd=private, env=env, other_user=True), 1)
        assert "not readable by this user" in line
        tally("runtime_errors")


# -- an unreachable upstream: --once gives up ---------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "target",
    ["trigger", "electric", "unknown host"],
)
def test_an_unreachable_upstream_ends_sync_once_with_a_clear_error(
    tmp_path: Path, target: str
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    env = clean_env(TRIGGER_SECRET_KEY="tr_dev_unreachable_0123456789")
    if target == "trigger":
        args = ("sync", "--api-url", url, "--tag", "a", "--once")
    elif target == "electric":
        args = ("sync", "--electric", url, "--table", "items", "--once")
    else:
        url = "http://replica-test.invalid"
        args = ("sync", "--api-url", url, "--run", "run_abc", "--once")
    started = time.monotonic()
    result = run(*args, cwd=tmp_path, env=env, timeout=90)
    elapsed = time.monotonic() - started
    line = one_error(result, 1)
    assert url in line and "gave up after" in line, line
    # Bounded retries, whatever the machine's speed: the --once budget, then the error.
    assert f"gave up after {ONCE_BACKOFF.max_retries} retries" in line, line
    db = tmp_path / "replica.db"
    status = run("status", "--json", "--db", str(db), cwd=tmp_path)
    assert '"state": "failed"' in status.stdout, status.stdout
    changes = run(
        "query", "select count(*) from _replica_changes", "--csv", "--db", str(db), cwd=tmp_path
    )
    assert changes.stdout.splitlines() == ["count(*)", "0"]
    tally("runtime_errors")
    record("bad input", **{f"unreachable {target}: gave up after s": round(elapsed, 1)})
