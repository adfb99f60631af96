"""Secrets: a token never reaches the logs (`--debug` and `--json-logs` included), the
database, the process's arguments or the text of an error; the database and the files kept
beside it are private (0600) whatever the umask; TLS certificates are verified unless
`--insecure` says otherwise.

`replica` runs in subprocesses against the emulator, or against a scripted server for the
upstreams that misbehave (error pages echoing the request, HTTPS with a self-signed
certificate), with tokens nothing else could contain. Everything that comes out is scanned
for each token and for pieces of it (a truncated token still gives it away).
tests/cli/test_sync_cli.py checks the plain `--debug` case and
tests/protocol/test_conformance.py the redacted URL of a protocol error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from replica.devserver import DevServer
from replica.devserver.auth import public_token
from tests.support.scripted_server import Handler, Reply, Request, ScriptedServer, change
from tests.support.scripted_server import shape_reply as electric_reply
from tests.support.waiting import wait_for

from .support import query, read_only, record, replica_command
from .test_bad_input import clean_env, closed_port, one_error

TAG = "secrets"


# -- tokens and the scan for them -----------------------------------------------------------


def distinctive(prefix: str, label: str) -> str:
    """A token nothing else could contain: `prefix` + `label` + 24 random hex digits."""
    return f"{prefix}{label}{secrets.token_hex(12)}"


def pieces(token: str) -> set[str]:
    """The token and every run of 12 of its characters: any of them in the output gives the
    token (or enough of it) away."""
    return {token} | {token[i : i + 12] for i in range(len(token) - 11)}


def leaks(data: str | bytes, tokens: Iterable[str]) -> list[str]:
    """The pieces of `tokens` found in `data`."""
    raw = data.encode() if isinstance(data, str) else data
    return sorted({piece for token in tokens for piece in pieces(token) if piece.encode() in raw})


def assert_clean(data: str | bytes, tokens: Iterable[str], where: str, *, kind: str) -> None:
    """No piece of any token in `data`; counts the bytes scanned under `<kind>_bytes_scanned`."""
    raw = data.encode() if isinstance(data, str) else data
    found = leaks(raw, tokens)
    record("secrets", leaks=len(found), **{f"{kind}_bytes_scanned": len(raw)})
    if found:
        longest = max(found, key=len)
        at = raw.find(longest.encode())
        context = raw[max(0, at - 120) : at + len(longest) + 120]
        pytest.fail(f"{where} gives a token away: {longest!r} in ...{context!r}...")


def error_line(result: subprocess.CompletedProcess[str], status: int) -> str:
    """The one `Error:` line of a failed command (with `--debug`, after a traceback)."""
    assert result.returncode == status, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def assert_output_clean(result: subprocess.CompletedProcess[str], tokens: Iterable[str]) -> None:
    tokens = list(tokens)
    command = " ".join(str(a) for a in result.args[3:])
    record("secrets", runs_checked=1)
    assert_clean(result.stdout, tokens, f"the stdout of `{command}`", kind="log")
    assert_clean(result.stderr, tokens, f"the stderr of `{command}`", kind="log")


def assert_database_clean(db: Path, tokens: Iterable[str]) -> None:
    """Every value of every table (sqlite_master and `_replica_*` included), then the raw
    bytes of the database and of its -wal and -shm files, if any."""
    tokens = list(tokens)
    conn = read_only(db)
    try:
        schema = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
        names = [name for kind, name, _, _ in schema if kind == "table"]
        assert "_replica_shapes" in names, names
        rows = [("sqlite_master", row) for row in schema]
        for name in names:
            quoted = '"' + name.replace('"', '""') + '"'
            rows += [(name, row) for row in conn.execute(f"SELECT * FROM {quoted}")]
    finally:
        conn.close()
    for table, row in rows:
        values = [v if isinstance(v, bytes) else str(v).encode() for v in row]
        assert_clean(b"\x00".join(values), tokens, f"a row of {table} in {db.name}", kind="db")
    record("secrets", db_rows_scanned=len(rows))
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{db}{suffix}")
        if path.exists():
            assert_clean(path.read_bytes(), tokens, f"the file {path.name}", kind="db")


def test_the_scan_finds_a_token_and_any_piece_of_it() -> None:
    token = distinctive("tr_dev_", "SCAN")
    assert leaks("nothing here", [token]) == []
    assert leaks(f"Authorization: Bearer {token}", [token]) != []
    assert leaks(f"/v1/shape?secret={token}&table=items", [token]) != []
    assert leaks(token[:-1].encode(), [token]) != []  # truncated
    assert leaks(f'{{"auth": "Bearer {token[5:20]}..."}}', [token]) != []  # a middle part
    assert leaks(b"\x00page\x00" + token[-14:].encode(), [token]) != []  # a tail, in bytes
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0." + secrets.token_urlsafe(32)
    assert leaks(f"... {jwt[-20:]}", [jwt]) != []  # a JWT's signature


# -- processes ----------------------------------------------------------------------------


def start(*args: str, cwd: Path, env: dict[str, str], umask: int = -1) -> subprocess.Popen[str]:
    return subprocess.Popen(
        replica_command(*args),
        cwd=cwd,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        umask=umask,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return finish(start(*args, cwd=cwd, env=env))


def stop(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    """SIGTERM a following `replica sync`; it must end cleanly."""
    proc.send_signal(signal.SIGTERM)
    result = finish(proc, timeout=30)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test started; any still running at the end are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=15)


def shape_states(db: Path) -> dict[str, str]:
    return dict(query(db, "SELECT key, state FROM _replica_shapes"))


def status(db: Path, cwd: Path) -> tuple[str, list[dict[str, Any]]]:
    """`replica status --json`: its output and the shapes it lists."""
    result = run("status", "--json", "--db", str(db), cwd=cwd, env=clean_env())
    assert result.returncode == 0, result.stderr
    return result.stdout, json.loads(result.stdout)


class Upstream:
    """A ScriptedServer on its own thread and event loop, for `replica` subprocesses."""

    def __init__(self, handler: Handler, *, tls: ssl.SSLContext | None = None) -> None:
        self.server = ScriptedServer(handler, tls=tls)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="upstream", daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def requests(self) -> list[Request]:
        return self.server.requests

    def _run(self) -> None:
        async def serve() -> None:
            async with self.server:
                self._stop = asyncio.Event()
                self._ready.set()
                await self._stop.wait()

        self._loop.run_until_complete(serve())
        self._loop.close()

    def __enter__(self) -> Upstream:
        self._thread.start()
        assert self._ready.wait(10), "the scripted server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


# -- logs ---------------------------------------------------------------------------------


@pytest.fixture
def emulator(devserver_factory: Callable[..., DevServer]) -> DevServer:
    """The emulator with a distinctive secret key, tagged runs (one with an offloaded
    payload, fetched with the token from another route) and an `items` table."""
    server = devserver_factory(
        secret_key=distinctive("tr_dev_", "KEY"),
        electric_secret=distinctive("es_", "ELECTRIC"),
        payload_offload_threshold=1024,
    )
    server.trigger("import-row", {"pad": "x" * 4000}, tags=[TAG])
    server.trigger("import-row", {"n": 1}, tags=[TAG], metadata={"step": 1})
    server.define_table("items", {"id": "int4", "title": "text"}, "id")
    server.insert("items", {"id": 1, "title": "one"}, {"id": 2, "title": "two"})
    return server


@pytest.mark.slow
def test_the_token_never_reaches_the_logs(tmp_path: Path, emulator: DevServer) -> None:
    key = emulator.secret_key
    jwt = emulator.public_token([f"read:tags:{TAG}"])
    wrong_key = distinctive("tr_dev_", "WRONG")
    forged_jwt = public_token(distinctive("tr_dev_", "OTHER"), emulator.environment_id, ["admin"])
    unreachable = f"http://127.0.0.1:{closed_port()}"
    token_file = tmp_path / "token.txt"
    token_file.write_text(key + "\n")
    everything = [key, jwt, wrong_key, forged_jwt]

    def env(**values: str) -> dict[str, str]:
        return clean_env(TRIGGER_API_URL=emulator.url, REPLICA_DB=str(tmp_path / "r.db"), **values)

    sync = ("sync", "--tag", TAG, "--once")
    # Giving up on an unreachable upstream takes several seconds of retries: meanwhile...
    far = ("--debug", "--api-url", unreachable, "--db", str(tmp_path / "unreachable.db"))
    gives_up = start(*sync, *far, cwd=tmp_path, env=env(TRIGGER_SECRET_KEY=key))
    cases = [
        (("--debug",), env(TRIGGER_SECRET_KEY=key), 0),
        (("--json-logs", "--debug"), env(TRIGGER_SECRET_KEY=key), 0),
        (("--debug",), env(TRIGGER_ACCESS_TOKEN=jwt), 0),
        (("--debug", "--token-file", str(token_file)), env(), 0),
        (("--debug",), env(TRIGGER_SECRET_KEY=wrong_key), 1),
        (("--json-logs", "--debug"), env(TRIGGER_ACCESS_TOKEN=forged_jwt), 1),
        # A token with a newline inside is refused before any request.
        (("--debug",), env(TRIGGER_SECRET_KEY=f"{wrong_key[:20]}\n{wrong_key[20:]}"), 2),
    ]
    for flags, case_env, expected in cases:
        result = run(*sync, *flags, cwd=tmp_path, env=case_env)
        assert result.returncode == expected, (flags, result.stderr)
        if expected == 0:
            assert "GET " in result.stderr, result.stderr  # the requests are logged
            assert "up to date, 2 rows" in result.stderr, result.stderr
        else:
            line = error_line(result, expected)
            assert expected == 2 or "HTTP 401" in line, line
        if "--json-logs" in flags:
            lines = [line for line in result.stderr.splitlines() if line.startswith("{")]
            assert lines and all(json.loads(line)["message"] for line in lines)
        assert_output_clean(result, everything)

    result = finish(gives_up)
    assert "gave up after" in error_line(result, 1)
    assert_output_clean(result, everything)
    payloads = query(tmp_path / "r.db", "SELECT payload FROM runs")
    assert any("x" * 4000 in (payload or "") for (payload,) in payloads)  # fetched, offloaded
    for db in ("r.db", "unreachable.db"):
        text, shapes = status(tmp_path / db, tmp_path)
        assert shapes, text
        assert_clean(text, everything, f"`replica status --json` of {db}", kind="text")


# -- the database -------------------------------------------------------------------------


@pytest.mark.slow
def test_the_token_never_reaches_the_database(
    tmp_path: Path, emulator: DevServer, procs: list[subprocess.Popen[str]]
) -> None:
    db = tmp_path / "replica.db"
    key, electric_secret = emulator.secret_key, emulator.config.electric_secret
    assert electric_secret is not None
    wrong_key, wrong_secret = distinctive("tr_dev_", "WRONG"), distinctive("es_", "WRONG")
    everything = [key, electric_secret, wrong_key, wrong_secret]
    base = clean_env(TRIGGER_API_URL=emulator.url, REPLICA_DB=str(db))
    electric = ("--electric", emulator.url, "--table")

    # Shapes that failed (401) leave their error in the database...
    wrong = {**base, "TRIGGER_SECRET_KEY": wrong_key, "ELECTRIC_SECRET": wrong_secret}
    failed = run(
        "sync", "--tag", "elsewhere", *electric, "other", "--once", cwd=tmp_path, env=wrong
    )
    assert "2 subscriptions failed" in one_error(failed, 1)
    assert_output_clean(failed, everything)
    errors = [e for (e,) in query(db, "SELECT last_error FROM _replica_shapes") if e]
    assert len(errors) == 2 and all("HTTP 401" in e for e in errors), errors

    # ...and a following sync keeps positions, rows and changes in it, and in its WAL
    # (--keep-others: the failed shapes, errors and all, stay in the database too).
    good = {**base, "TRIGGER_SECRET_KEY": key, "ELECTRIC_SECRET": electric_secret}
    args = ("sync", "--tag", TAG, *electric, "items", "--debug", "--keep-others")
    proc = start(*args, cwd=tmp_path, env=good)
    procs.append(proc)
    wait_for(
        lambda: sorted(shape_states(db).values()) == ["failed", "failed", "live", "live"],
        what="both shapes to be live",
    )
    emulator.update("items", {"id": 1}, {"title": "renamed"})
    emulator.trigger("import-row", {"n": 2}, tags=[TAG])
    wait_for(
        lambda: (
            query(db, "SELECT count(*) FROM runs") == [(3,)]
            and query(db, "SELECT title FROM items WHERE id = 1") == [("renamed",)]
        ),
        what="the live changes",
    )
    assert Path(f"{db}-wal").stat().st_size > 0
    assert_database_clean(db, everything)
    assert_output_clean(stop(proc), everything)
    assert_database_clean(db, everything)  # once checkpointed into the database file


# -- process arguments --------------------------------------------------------------------


def command_lines(pid: int) -> list[bytes]:
    """The command line of a process and of every process under it."""
    found: list[bytes] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        found.append(Path(f"/proc/{current}/cmdline").read_bytes())
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            pending += [int(child) for child in children.read_text().split()]
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("source", ["environment", "token file"])
def test_the_token_is_not_in_the_process_arguments(
    tmp_path: Path, emulator: DevServer, procs: list[subprocess.Popen[str]], source: str
) -> None:
    # The environment (TRIGGER_SECRET_KEY) is the documented way in, so /proc/PID/environ
    # holds the token there by design; only the command line is world-readable (`ps`).
    key, db = emulator.secret_key, tmp_path / "replica.db"
    env = clean_env(TRIGGER_API_URL=emulator.url, REPLICA_DB=str(db))
    args = ["sync", "--tag", TAG, "--debug"]
    if source == "environment":
        env["TRIGGER_SECRET_KEY"] = key
    else:
        token_file = tmp_path / "token.txt"
        token_file.write_text(key)
        args += ["--token-file", str(token_file)]
    proc = start(*args, cwd=tmp_path, env=env)
    procs.append(proc)
    wait_for(lambda: list(shape_states(db).values()) == ["live"], what="the shape to be live")
    lines = command_lines(proc.pid)
    assert b"\x00sync\x00" in lines[0], lines  # it is the right process
    for line in lines:
        assert_clean(line, [key], f"the command line {line!r}", kind="cmdline")
    record("secrets", cmdlines_checked=len(lines))
    assert_output_clean(stop(proc), [key])


# -- error text ---------------------------------------------------------------------------


def echoing(status: int) -> Handler:
    """A server refusing every request with a body that quotes the request's credentials
    and URL, as some proxies' and frameworks' error pages do."""

    def handler(request: Request) -> Reply:
        auth = request.headers.get("authorization", "-")
        return Reply(status, {}, {"error": f"refused {auth} for {request.target}"})

    return handler


STATUSES = (400, 401, 500)


@pytest.mark.slow
def test_error_text_never_holds_the_secret(tmp_path: Path) -> None:
    key, electric_secret = distinctive("tr_dev_", "ECHO"), distinctive("es_", "ECHO")
    in_url = distinctive("es_", "INURL")
    everything = [key, electric_secret, in_url]
    env = clean_env(TRIGGER_SECRET_KEY=key, ELECTRIC_SECRET=electric_secret)
    with contextlib.ExitStack() as stack:
        servers = {status: stack.enter_context(Upstream(echoing(status))) for status in STATUSES}
        cases = {
            f"{status}-{kind}": args
            for status, server in servers.items()
            for kind, args in (
                ("electric", ("--electric", server.url, "--table", "items")),
                ("trigger", ("--api-url", server.url, "--tag", TAG)),
            )
        }
        # Electric Cloud style, the secret in the URL's query: refused before any request
        # (it would show in process arguments), without repeating the secret.
        in_query = f"{servers[401].url}/v1/shape?source_id=src&secret={in_url}"
        refused = finish(
            start(
                "sync", "--electric", in_query, "--table", "items", "--once", cwd=tmp_path, env=env
            )
        )
        assert "ELECTRIC_SECRET" in one_error(refused, 2)
        assert_output_clean(refused, everything)
        assert not list(tmp_path.glob("*.db"))
        # A 500 is retried for several seconds before --once gives up: run them all at once.
        running = {
            name: start("sync", *args, "--once", "--db", f"{name}.db", cwd=tmp_path, env=env)
            for name, args in cases.items()
        }
        results = {name: finish(proc) for name, proc in running.items()}
        assert all(server.requests for server in servers.values())
    for name, result in results.items():
        line = one_error(result, 1)
        assert f"HTTP {name[:3]}" in line, (name, line)
        assert "refused" in line, (name, line)  # the server's words are quoted...
        assert_output_clean(result, everything)  # ...without the secrets
        db = tmp_path / f"{name}.db"
        text, shapes = status(db, tmp_path)
        assert [shape["state"] for shape in shapes] == ["failed"], text
        assert_clean(text, everything, f"`replica status --json` after {name}", kind="text")
        assert_database_clean(db, everything)


# -- file modes ---------------------------------------------------------------------------


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.slow
def test_the_database_and_its_side_files_are_private_whatever_the_umask(
    tmp_path: Path, emulator: DevServer, procs: list[subprocess.Popen[str]]
) -> None:
    env = clean_env(TRIGGER_API_URL=emulator.url, TRIGGER_SECRET_KEY=emulator.secret_key)
    once = tmp_path / "once.db"
    args = ("sync", "--tag", TAG, "--once", "--db", str(once))
    result = finish(start(*args, cwd=tmp_path, env=env, umask=0o000))
    assert result.returncode == 0, result.stderr
    assert mode(once) == 0o600

    # While it follows, SQLite's -wal and -shm and replica's .lock exist beside it.
    db = tmp_path / "live.db"
    proc = start("sync", "--tag", TAG, "--db", str(db), cwd=tmp_path, env=env, umask=0o000)
    procs.append(proc)
    wait_for(lambda: list(shape_states(db).values()) == ["live"], what="the shape to be live")
    process_status = Path(f"/proc/{proc.pid}/status")
    if process_status.exists():  # Linux: the child's umask really is 0000
        assert "\nUmask:\t0000\n" in process_status.read_text()
    files = [db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}.lock")]
    modes = {path.name: oct(mode(path)) for path in files}
    assert all(mode(path) == 0o600 for path in files), modes
    stop(proc)
    assert mode(db) == 0o600
    record("secrets", files_checked=len(files) + 1)


# -- TLS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made with `openssl`."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to make a certificate with")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    request = "req -x509 -nodes -days 2 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1"
    names = "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
    subprocess.run(
        [openssl, *request.split(), *names.split(), "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def items_snapshot(request: Request) -> Reply:
    return electric_reply(
        [change(1, id="1", title="over TLS", done="t"), change(2, id="2", title="two", done="f")],
        done=True,
    )


@pytest.mark.slow
def test_tls_is_verified_unless_insecure(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    env = clean_env()
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        env.pop(name, None)
    with Upstream(items_snapshot, tls=context) as server:
        assert server.url.startswith("https://")
        sync = ("sync", "--electric", server.url, "--table", "items", "--once")

        started = time.monotonic()
        refused = run(*sync, "--db", "verified.db", cwd=tmp_path, env=env)
        elapsed = time.monotonic() - started
        line = one_error(refused, 1)
        assert "TLS certificate of 127.0.0.1 could not be verified" in line, line
        assert re.search("self[- ]signed certificate", line) and "--insecure" in line, line
        # A certificate error is final: no retry (each one is logged), so no "gave up".
        assert "retrying" not in refused.stderr and "gave up" not in line, refused.stderr
        assert not server.requests  # no request went out over the unverified connection
        _, shapes = status(tmp_path / "verified.db", tmp_path)
        assert shapes[0]["state"] == "failed" and "certificate" in shapes[0]["last_error"]

        insecure = run(*sync, "--insecure", "--db", "insecure.db", cwd=tmp_path, env=env)
        trusted = run(
            *sync, "--db", "trusted.db", cwd=tmp_path, env={**env, "SSL_CERT_FILE": str(cert)}
        )
    for result, db in ((insecure, "insecure.db"), (trusted, "trusted.db")):
        assert result.returncode == 0, result.stderr
        rows = query(tmp_path / db, "SELECT id, title FROM items ORDER BY id")
        assert rows == [(1, "over TLS"), (2, "two")]
    record("secrets", tls_refused_after_s=round(elapsed, 1))
