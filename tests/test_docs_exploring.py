"""docs/exploring.md's examples run as written on a real replica, and change nothing in it."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.replicas import sample_replica

PAGE = Path(__file__).resolve().parent.parent / "docs" / "exploring.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), flags=re.S)


def contents(db: Path) -> list[str]:
    """The database as SQL: what a reader can see, whatever the WAL and checkpoints did."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


@pytest.fixture
def replica_db(tmp_path: Path) -> Path:
    return sample_replica(tmp_path / "replica.db")


def test_the_shell_examples_run_and_change_nothing(replica_db: Path) -> None:
    lines = [line for block in blocks("sh") for line in block.splitlines() if line.strip()]
    assert any(line.startswith("sqlite-utils tables replica.db --counts") for line in lines)
    assert any(line.startswith("sqlite-utils rows replica.db runs") for line in lines)
    before = contents(replica_db)
    # The commands this environment installed: `replica` and `sqlite-utils`.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("REPLICA_DB", None)
    for line in lines:
        result = subprocess.run(
            ["bash", "-c", line],
            cwd=replica_db.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, (line, result.stderr)
        assert result.stdout or ">" in line, line
    assert (replica_db.parent / "failed.csv").read_text().splitlines()[1].startswith("run_2,")
    assert contents(replica_db) == before


def test_the_python_example_runs(
    replica_db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (example,) = blocks("python")
    monkeypatch.chdir(replica_db.parent)
    before = contents(replica_db)
    exec(compile(example, str(PAGE), "exec"), {})
    printed = capsys.readouterr().out
    assert "'runs'" in printed
    assert "'id': 'run_2'" in printed and "boom" in printed
    assert contents(replica_db) == before
