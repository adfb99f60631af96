"""The README and docs stay true: the CLI reference is current, the quick start works."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from replica.cli import cli
from replica.commands.reference import render

ROOT = Path(__file__).resolve().parent.parent


def test_cli_reference_is_current() -> None:
    documented = (ROOT / "docs" / "cli.md").read_text()
    assert documented == render(cli), (
        "docs/cli.md is stale: run `python -m replica.commands.reference > docs/cli.md`"
    )


def test_every_command_is_documented() -> None:
    documented = (ROOT / "docs" / "cli.md").read_text()
    for name in cli.list_commands(None):  # type: ignore[arg-type]
        assert f"## replica {name}\n" in documented


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_readme_quick_start_is_two_commands_and_ci_runs_the_second() -> None:
    install_and_demo, tests = quick_start_commands()
    assert install_and_demo.endswith("replica demo")
    assert "pip install" in install_and_demo
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci or tests.lstrip("./") in ci


def test_readme_demo_command_runs(tmp_path: Path) -> None:
    install_and_demo, _ = quick_start_commands()
    # The install step is what this suite's own environment did; run what it ends with.
    demo = install_and_demo.split("&&")[-1].strip().split()
    assert demo[-2:] == ["replica", "demo"] or demo[-1] == "demo"
    result = subprocess.run(
        [sys.executable, "-m", "replica", "demo", "--duration", "3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "replica-demo.db").exists()


def test_shell_examples_quote_sql_parameters_so_the_shell_leaves_them() -> None:
    # bash expands $1 inside double quotes: --where "id > $1" reaches replica as "id > ".
    expanded = re.compile(r'"[^"\n]*\$[0-9][^"\n]*"')
    pages = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "examples").glob("*/*.md")]
    from replica.commands.sync import sync

    texts = {str(p.relative_to(ROOT)): p.read_text() for p in pages}
    texts["replica sync --help"] = sync.help or ""
    for name, text in texts.items():
        for line in text.splitlines():
            if "--where" in line or "--param" in line:
                assert not expanded.search(line), f"{name}: {line.strip()}"
