"""docs/methods.md: every section that the code, configs, README and tests cite exists.

Citations have the form "methods.md §2.7" (also "docs/methods.md §2.7"); a run of sections
after one file name ("§3.2, §3.5", "§1 and §6") cites each of them. Section headings are
Markdown headings that start with the section number ("## 2. SASTC", "### 2.7 STM score").
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHODS = ROOT / "docs" / "methods.md"

#: the file name, then one or more section numbers joined by commas, "and" or spaces
CITATION = re.compile(r"methods\.md((?:(?:\s*,\s*|\s+and\s+|\s+)§\d+(?:\.\d+)*)+)")
SECTION = re.compile(r"§(\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s", re.MULTILINE)
#: the top-level sections other files rely on, and a word each heading must contain
TOPICS = {"1": "substrate", "2": "SASTC", "2.7": "STM", "3": "CKDSNN", "4": "Rate-BP", "5": "BRD"}


def cited_files() -> list[Path]:
    """The files whose citations must resolve: src/ (not build artefacts such as the
    egg-info), configs/, tests/ and README.md."""
    files = [ROOT / "README.md"]
    files += sorted((ROOT / "src").rglob("*.py"))
    files += sorted((ROOT / "src").rglob("*.cpp"))
    files += sorted((ROOT / "configs").rglob("*.yaml"))
    files += sorted((ROOT / "tests").rglob("*.py"))
    this = Path(__file__).resolve()  # its examples are not citations
    return [p for p in files if p.is_file() and p.resolve() != this]


def citations() -> dict[str, list[str]]:
    """``{section: [file:line, ...]}`` of every citation of docs/methods.md."""
    found: dict[str, list[str]] = {}
    for path in cited_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in CITATION.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            for section in SECTION.findall(match.group(1)):
                found.setdefault(section, []).append(f"{path.relative_to(ROOT)}:{line}")
    return found


def headings() -> dict[str, str]:
    """``{section number: heading line}`` of docs/methods.md."""
    text = METHODS.read_text(encoding="utf-8")
    out: dict[str, str] = {}
    for match in HEADING.finditer(text):
        end = text.find("\n", match.start())
        out.setdefault(match.group(1), text[match.start() : end if end >= 0 else None])
    return out


def test_the_citation_pattern_reads_lists_of_sections():
    text = "see methods.md §3.2, §3.5 and docs/methods.md §1 and §6; methods.md §3.3."
    sections = [s for m in CITATION.finditer(text) for s in SECTION.findall(m.group(1))]
    assert sections == ["3.2", "3.5", "1", "6", "3.3"]
    assert HEADING.findall("## 2. SASTC\n### 2.7 STM score\n#### 2.7.1 x\n## Recipe x\n") == [
        "2",
        "2.7",
        "2.7.1",
    ]


def test_every_cited_section_exists():
    cited, present = citations(), headings()
    assert cited, "no citation of docs/methods.md found: has the citation format changed?"
    missing = {s: where for s, where in cited.items() if s not in present}
    assert not missing, (
        "sections cited but missing from docs/methods.md (section: where cited): "
        + "; ".join(f"§{s}: {', '.join(where)}" for s, where in sorted(missing.items()))
    )


@pytest.mark.parametrize(("section", "word"), sorted(TOPICS.items()))
def test_sections_keep_their_topics(section, word):
    heading = headings().get(section)
    assert heading is not None, f"docs/methods.md has no section {section}"
    assert word.lower() in heading.lower(), f"§{section} should be about {word}: {heading!r}"


def test_section_numbers_are_unique():
    text = METHODS.read_text(encoding="utf-8")
    numbers = HEADING.findall(text)
    assert len(numbers) == len(set(numbers)), sorted(n for n in numbers if numbers.count(n) > 1)


def test_readme_does_not_point_outside_the_repository():
    assert "../shared" not in (ROOT / "README.md").read_text(encoding="utf-8")


def test_nothing_cites_the_removed_stm_page():
    stale = [
        str(p.relative_to(ROOT))
        for p in cited_files()
        if "docs/stm.md" in p.read_text(encoding="utf-8", errors="replace")
    ]
    assert not stale, f"docs/stm.md is now docs/methods.md §2.7; still cited in {stale}"
