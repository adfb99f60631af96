"""The user-facing docs stay true: every page is reachable from the index and the README,
links resolve, every public name is in the Python API reference with its parameters, and
the quick start's Python runs."""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import replica
from replica.store import Store
from tests.notify.helpers import Writer, run, update
from tests.support.waiting import listen_until

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
API = DOCS / "python-api.md"
QUICKSTART = DOCS / "quickstart.md"

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", flags=re.S | re.M)


def prose(path: Path) -> str:
    """The Markdown without its fenced code blocks (links there are examples, not links)."""
    return FENCE.sub("", path.read_text())


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md")), *sorted((ROOT / "examples").rglob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for line in prose(path).splitlines():
        if line.startswith("#"):
            base = slug(line.lstrip("#"))
            name, n = base, 0
            while name in found:  # repeated headings get -1, -2, ...
                n += 1
                name = f"{base}-{n}"
            found.add(name)
    return found


def links(path: Path) -> Iterator[str]:
    for target in LINK.findall(prose(path)):
        if not re.match(r"[a-z]+:", target):
            yield target


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_every_docs_page_is_in_the_index_and_the_readme() -> None:
    index = set(links(DOCS / "index.md"))
    readme = set(links(README))
    for page in DOCS.glob("*.md"):
        if page.name != "index.md":
            assert page.name in index, f"docs/index.md does not link {page.name}"
            assert f"docs/{page.name}" in readme, f"README.md does not link docs/{page.name}"
    assert "docs/index.md" in readme
    assert "../examples/README.md" in index and "examples/README.md" in readme


def test_the_readme_shows_a_screenshot() -> None:
    images = re.findall(r"!\[[^\]]+\]\((docs/[^)]+\.png)\)", README.read_text())
    assert images, "README.md shows no screenshot from docs/"
    for image in images:
        assert (ROOT / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", image


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    for target in links(page):
        file_part, _, anchor = target.partition("#")
        resolved = (page.parent / file_part).resolve() if file_part else page
        assert resolved.exists(), f"{page.name}: {target} does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{page.name}: no heading for {target}"


def public_methods() -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(replica.Replica).items()
        if not name.startswith("_") and callable(member)
    }


def sections(path: Path) -> list[str]:
    """The page cut at each heading (a section starts with its heading line)."""
    return re.split(r"\n(?=#{2,4} )", path.read_text())


def test_python_api_documents_every_public_name() -> None:
    text = API.read_text()
    for name in replica.__all__:
        assert f"replica.{name}" in text, f"docs/python-api.md does not document {name}"


def test_python_api_documents_every_method_and_parameter() -> None:
    parts = sections(API)
    documented = {
        f"`replica.{name}`": inspect.signature(getattr(replica, name))
        for name in ("tag", "run_feed", "batch", "electric")
    }
    documented.update({f"db.{name}(": sig for name, sig in public_methods().items()})
    for heading, signature in documented.items():
        matching = [part for part in parts if heading in part.split("\n", 1)[0]]
        assert matching, f"docs/python-api.md has no heading with {heading}"
        for parameter in signature.parameters:
            if parameter != "self":
                assert any(parameter in part for part in matching), (
                    f"docs/python-api.md does not mention {parameter} under {heading}"
                )


@pytest.mark.parametrize("page", [API, QUICKSTART], ids=lambda p: p.name)
def test_python_examples_compile_and_name_real_api(page: Path) -> None:
    blocks = python_blocks(page)
    assert blocks
    for block in blocks:
        flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT | ast.PyCF_ONLY_AST
        tree = compile(block, str(page), "exec", flags=flags)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                owner = {"db": replica.Replica, "replica": replica}.get(node.value.id)
                if owner is not None:
                    assert hasattr(owner, node.attr), f"{page.name}: {node.value.id}.{node.attr}"


def test_the_quick_start_callback_and_read_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    callback, reading = python_blocks(QUICKSTART)
    monkeypatch.chdir(tmp_path)  # the snippet opens ./replica.db
    with Store(tmp_path / "replica.db") as store:
        writer = Writer(store)
        namespace: dict[str, object] = {}
        # Everything but the blocking listen(), which the test runs until the consumer has
        # handled the changes below.
        exec(compile(callback.replace("db.listen()", "pass"), str(QUICKSTART), "exec"), namespace)
        db = namespace["db"]
        assert isinstance(db, replica.Replica)
        error = '{"message": "SMTP said no"}'
        writer.commit(run(1, status="EXECUTING", tags='["user:1234"]'))
        writer.commit(update(1, status="FAILED", error=error))
        writer.commit(update(1, duration_ms=1200))  # already failed: no second line
        writer.commit(run(2, status="COMPLETED", tags='["user:1234"]'))
        listen_until(db, lambda: db.consumers()[0].last_seq >= 3, what="the alerts consumer")
        assert capsys.readouterr().out == "run failed: run_1 task SMTP said no\n"
        exec(compile(reading, str(QUICKSTART), "exec"), namespace)
        printed = capsys.readouterr().out
        assert printed.startswith("run_1 2026-01-01 00:00:01+00:00 True SMTP said no")
        db.close()


def test_every_example_has_a_readme_an_index_entry_and_a_test() -> None:
    examples = ROOT / "examples"
    index = (examples / "README.md").read_text()
    folders = [p for p in examples.iterdir() if p.is_dir() and p.name[0] not in "._"]
    assert len(folders) >= 5
    for folder in folders:
        assert (folder / "README.md").exists(), folder.name
        assert f"]({folder.name}/)" in index, f"examples/README.md does not list {folder.name}"
        test = ROOT / "tests" / "examples" / f"test_{folder.name}.py"
        assert test.exists(), f"no {test.relative_to(ROOT)} runs examples/{folder.name}"
