"""The benchmark runner still works: `python -m benchmarks --quick` on a few hundred runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
# A fresh machine builds better-sqlite3 from source first (npm ci): minutes on a loaded one.
@pytest.mark.timeout(1800)
def test_quick_benchmark_run_writes_a_results_file(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    (tmp_path / "RESULTS.md").write_text("old figures\n<!-- x -->\n")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--results", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1700,  # the first run may build better-sqlite3 (npm ci)
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = results.read_text()
    assert "| 300 |" in text  # the initial-sync row
    for section in (
        "### Initial sync",
        "### Offloaded packets",
        "### Packet routes' ceiling",
        "### Live",
        "### Idle",
        "### Targets",
    ):
        assert section in text
    assert "SDK subscribeToRunsWithTag" in text
    assert "Measured" in text and "sqlite" in text
    assert "| target | measured | verdict |" in proc.stdout


def test_only_names_the_parts_it_knows() -> None:
    from benchmarks.run_all import main

    with pytest.raises(SystemExit, match="unknown part"):
        main(["--only", "initial,bogus"])
