"""The docs a source file cites are in the repository: every `docs/NAME.md §N` names an existing
page and one of its numbered sections."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITATION = re.compile(r"(?:docs/)?(science|architecture)\.md(?: §(\d+))?")


def cited() -> list[tuple[Path, str, str | None]]:
    found = []
    for path in [*ROOT.glob("src/**/*.py"), *ROOT.glob("tests/*.py"), *ROOT.glob("bench/*.py"),
                 ROOT / "pyproject.toml", ROOT / "README.md"]:
        for match in CITATION.finditer(path.read_text(encoding="utf-8")):
            found.append((path, match.group(1), match.group(2)))
    return found


def test_every_citation_points_into_docs():
    citations = cited()
    assert len(citations) > 15  # the engine and the laws cite the science they implement
    for path, page, section in citations:
        doc = ROOT / "docs" / f"{page}.md"
        assert doc.is_file(), f"{path.name} cites {page}.md, which the repository lacks"
        if section is not None:
            headings = re.findall(r"^## (\d+)\.", doc.read_text(encoding="utf-8"), flags=re.MULTILINE)
            assert section in headings, f"{path.name} cites {page}.md §{section}, which has no such section"
