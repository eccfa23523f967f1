"""The docs a source file cites are in the repository: every `docs/NAME.md §N` names an existing
page and one of its numbered sections."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import REPO_ROOT

CITATION = re.compile(r"(?:docs/)?(science|architecture)\.md(?: §(\d+))?")


def cited() -> list[tuple[Path, str, str | None]]:
    found = []
    for path in [*REPO_ROOT.glob("src/**/*.py"), *REPO_ROOT.glob("tests/**/*.py"),
                 *REPO_ROOT.glob("bench/**/*.py"), REPO_ROOT / "pyproject.toml", REPO_ROOT / "README.md",
                 *REPO_ROOT.glob("docs/**/*.md")]:
        for match in CITATION.finditer(path.read_text(encoding="utf-8")):
            found.append((path, match.group(1), match.group(2)))
    return found


def test_every_citation_points_into_docs():
    citations = cited()
    assert len(citations) > 15  # the engine and the laws cite the science they implement
    for path, page, section in citations:
        doc = REPO_ROOT / "docs" / f"{page}.md"
        assert doc.is_file(), f"{path.name} cites {page}.md, which the repository lacks"
        if section is not None:
            headings = re.findall(r"^## (\d+)\.", doc.read_text(encoding="utf-8"), flags=re.MULTILINE)
            assert section in headings, f"{path.name} cites {page}.md §{section}, which has no such section"


def test_every_training_module_is_under_a_layer_contract():
    """Each module of training/ is a component or a recipe (or a command) in pyproject's import-linter
    contracts, so `lint-imports` checks it; serve/ is among the sources that never import a command."""
    import tomllib

    contracts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    recipe = next(c for c in contracts if c["name"] == "training components never import a recipe")
    leaves = next(c for c in contracts if c["name"].startswith("command modules are leaves"))
    named = set(recipe["source_modules"]) | set(recipe["forbidden_modules"])
    for path in (REPO_ROOT / "src" / "distillscale" / "training").rglob("*.py"):
        module = ".".join(path.relative_to(REPO_ROOT / "src").with_suffix("").parts)
        if path.name == "__init__.py" or path.stem.endswith("commands") or module in leaves["forbidden_modules"]:
            continue
        assert module in named, f"{module} is neither a component nor a recipe in pyproject.toml"
    assert "distillscale.serve" in leaves["source_modules"]
    assert any(c["type"] == "acyclic_siblings" and c["ancestors"] == ["distillscale"] for c in contracts)


def test_the_readme_fits_150_lines():
    """The README is a newcomer's first screen or three: what it does, the two commands, an example."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    for needed in ("make demo", "make test", "distillscale plan --law busbridge2025", "import distillscale as ds"):
        assert needed in readme, needed
