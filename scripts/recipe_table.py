"""README's "Paper recipes" table, rendered from the recipes' headers (their format and
reader: ``spikedistill.engine.recipe_headers``). ``tests/test_recipe_table.py`` checks the
README's table against ``render_table()``.

    python scripts/recipe_table.py           # print the table
    python scripts/recipe_table.py --check   # exit 1 if README.md's table differs
    python scripts/recipe_table.py --write   # replace README.md's table with the rendered one
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spikedistill.engine.recipe_headers import (  # noqa: F401  (the tests read them here)
    CONFIGS,
    METHODS,
    Header,
    HeaderError,
    headers,
    paper_configs,
    read_header,
)

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SECTION = "### Paper recipes"
DATASETS = ("cifar10", "cifar100", "imagenet", "dvsgesture", "cifar10dvs")  # the table's order


def _order(h: Header) -> tuple:
    return (
        METHODS.index(h.method),
        DATASETS.index(h.dataset) if h.dataset in DATASETS else len(DATASETS),
        h.role != "teacher",
        h.student or "",
        h.teacher or "",
        h.T or 0,
        h.name,
    )


def render_table(rows: list[Header] | None = None) -> str:
    """The markdown table of every row config (base recipes left out), teachers first."""
    rows = [h for h in (headers() if rows is None else rows) if not h.is_base]
    out = [
        "| config | paper, where | row: student <- teacher, T | paper's top-1 |",
        "|---|---|---|---|",
    ]
    for h in sorted(rows, key=_order):
        target = f"{h.target:.2f} %" if h.target is not None else f"none ({h.why})"
        out.append(f"| `{h.name}` | {h.method}, {h.source} | {h.row} | {target} |")
    return "\n".join(out) + "\n"


def _table_span(lines: list[str]) -> tuple[int, int]:
    """``[start, end)`` of the table lines in README's "Paper recipes" subsection."""
    try:
        begin = lines.index(SECTION)
    except ValueError:
        raise HeaderError(f"README.md has no {SECTION!r} heading") from None
    end = next((i for i in range(begin + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    table = [i for i in range(begin + 1, end) if lines[i].startswith("|")]
    if not table or table != list(range(table[0], table[-1] + 1)):
        raise HeaderError(f"README.md's {SECTION!r} needs one contiguous table")
    return table[0], table[-1] + 1


def readme_table(text: str | None = None) -> str:
    """The table that README.md's "Paper recipes" subsection has now."""
    lines = (README.read_text(encoding="utf-8") if text is None else text).splitlines()
    start, end = _table_span(lines)
    return "\n".join(lines[start:end]) + "\n"


def write_readme() -> bool:
    """Replace README.md's table with the rendered one; True if it changed."""
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    start, end = _table_span([line.rstrip("\n") for line in lines])
    new = "".join(lines[:start]) + render_table() + "".join(lines[end:])
    if new != text:
        README.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if README.md's table differs")
    mode.add_argument("--write", action="store_true", help="write the table into README.md")
    args = parser.parse_args(argv)
    if args.check:
        if readme_table() != render_table():
            print(
                "README.md's paper recipes table is stale: python scripts/recipe_table.py --write"
            )
            return 1
        return 0
    if args.write:
        print("README.md updated" if write_readme() else "README.md already current")
        return 0
    sys.stdout.write(render_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
