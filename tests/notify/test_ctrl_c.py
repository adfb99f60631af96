"""Ctrl-C ends the blocking `db.listen()` and `db.sync()` cleanly: the call returns, the
program goes on, and no traceback is printed."""

from __future__ import annotations

import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from replica.devserver import DevServer
from replica.store import Store

from .helpers import Writer, run, wait_for

LISTENER = """
import sys
import replica

db = replica.Replica(sys.argv[1])

@db.on_change("runs", start="beginning")
def seen(change):
    print("seen", change.row["id"], flush=True)

db.listen()
print("listen returned", flush=True)
"""

SYNCER = """
import sys
import replica

db = replica.Replica(sys.argv[1])
print("sync returned", db.sync(replica.tag("user:1", token=sys.argv[2], api_url=sys.argv[3])),
      flush=True)
"""


def _start(tmp_path: Path, source: str, *args: str) -> subprocess.Popen[str]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # our SIGINT only
    )


def _line(proc: subprocess.Popen[str]) -> str:
    """The next line the process prints (a hang fails the test instead of blocking it)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    assert ready, "the process printed nothing"
    return proc.stdout.readline().strip()


def _interrupt(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    return out, err


def _states(db: Path) -> list[str]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [state for (state,) in conn.execute("SELECT state FROM _replica_shapes")]
    except sqlite3.OperationalError:
        return []  # not migrated yet
    finally:
        conn.close()


def test_ctrl_c_ends_listen_cleanly(tmp_path: Path, db_path: Path, store: Store) -> None:
    proc = _start(tmp_path, LISTENER, str(db_path))
    try:
        # A delivered change proves the listener runs (its Ctrl-C handling is in place).
        Writer(store).commit(run(1))
        assert _line(proc) == "seen run_1"
        out, _ = _interrupt(proc)
        assert out.strip() == "listen returned"
    finally:
        proc.kill()


def test_ctrl_c_ends_sync_cleanly(tmp_path: Path, devserver: DevServer) -> None:
    devserver.trigger("send-email", {}, tags=["user:1"])
    proc = _start(tmp_path, SYNCER, str(tmp_path / "r.db"), devserver.secret_key, devserver.url)
    try:
        # Live means the sync runs (its Ctrl-C handling is in place).
        wait_for(lambda: _states(tmp_path / "r.db") == ["live"], what="the shape live")
        out, _ = _interrupt(proc)
        assert out.strip() == "sync returned True"
    finally:
        proc.kill()
