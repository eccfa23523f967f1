"""What a user reads speaks of the product, not of its history: no "issue 64" or "round 6" in the
README, the documentation, any command's --help, or the text the package itself holds (its
docstrings, which the API reference renders, its messages and report pages, its data files). A
result names its date, data and command instead. Code comments may keep their history."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.cli.conftest import leaf_commands
from tests.conftest import REPO_ROOT

HISTORY = re.compile(r"\bissues? #?\d+|\bround \d+\b", re.IGNORECASE)
PACKAGE = REPO_ROOT / "src" / "distillscale"


def _hits(text: str) -> list[str]:
    return [line.strip()[:120] for line in text.splitlines() if HISTORY.search(line)]


def _python_strings(path: Path) -> str:
    """Every string constant of a module (docstrings, messages, f-strings' text), not its comments."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return "\n".join(node.value for node in ast.walk(tree)
                     if isinstance(node, ast.Constant) and isinstance(node.value, str))


def test_the_pattern_finds_history_and_leaves_numbers_alone():
    assert _hits("before issue 64 the law") and _hits("Issue 38: the verdict") and _hits("issues 55 and 57")
    assert _hits("the round 6 numbers") and _hits("fixed in issue #64")
    assert not _hits("0.22-0.67 around 0.40; 12 sets; issued 3 runs; CSS color #222; 2,000 steps")


def test_readme_and_docs_name_no_issue():
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]
    assert len(pages) > 20
    found = {str(page.relative_to(REPO_ROOT)): _hits(page.read_text(encoding="utf-8")) for page in pages}
    found = {page: hits for page, hits in found.items() if hits}
    assert not found, "\n".join(f"{page}: {hit}" for page, hits in found.items() for hit in hits)


def test_the_packages_text_names_no_issue():
    """Docstrings and string literals of every module, and the package's data files (presets,
    specs, throughput tables, provenance notes) whole."""
    found = {}
    for path in sorted(PACKAGE.rglob("*")):
        if path.suffix == ".py":
            hits = _hits(_python_strings(path))
        elif path.suffix in (".json", ".toml", ".md", ".html", ".js", ".css", ".txt"):
            hits = _hits(path.read_text(encoding="utf-8"))
        else:
            continue
        if hits:
            found[str(path.relative_to(REPO_ROOT))] = hits
    assert not found, "\n".join(f"{path}: {hit}" for path, hits in found.items() for hit in hits)


COMMANDS = [([], None), *leaf_commands()]
GROUPS = sorted({tuple(path[:-1]) for path, _ in leaf_commands() if len(path) > 1})


@pytest.mark.parametrize("path", [list(group) for group in GROUPS] + [path for path, _ in COMMANDS],
                         ids=lambda path: " ".join(path) or "distillscale")
def test_no_help_names_an_issue(cli, path):
    code, out, err = cli(*path, "--help")
    assert code == 0, err
    assert "Usage" in out and not _hits(out), _hits(out)
