"""`replica demo`: the emulator, a sync of tag user:1234 and a live table, in one command."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path


def test_demo_syncs_the_simulated_user_1234_runs_and_no_others(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "replica", "demo", "--duration", "10"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    db = tmp_path / "replica-demo.db"
    assert db.exists()
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT id, tags, status FROM runs").fetchall()
    assert len(rows) >= 3, result.stdout
    assert all('"user:1234"' in tags for _, tags, _ in rows)
    tagged = conn.execute("SELECT count(DISTINCT run_id) FROM run_tags WHERE tag = 'user:1234'")
    assert tagged.fetchone()[0] == len(rows)
    # Runs moved while we watched: more than one status was recorded for some of them.
    moved = conn.execute("SELECT count(*) FROM run_history WHERE previous_status IS NOT NULL")
    assert moved.fetchone()[0] > 0
    # Run ids are shown whole (users copy them into `sync --run`), and a run still executing
    # never shows 100 %. The table shows the 15 most recent runs.
    shown = conn.execute("SELECT id FROM runs ORDER BY created_at DESC LIMIT 15").fetchall()
    for (run_id,) in shown:
        assert run_id in result.stdout
    assert not re.search(r"EXECUTING\s+100%", result.stdout), result.stdout
    assert "sqlite3 replica-demo.db" in result.stdout
    assert "datasette replica-demo.db" in result.stdout
