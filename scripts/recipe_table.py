"""The paper recipes' headers, and README's "Paper recipes" table rendered from them.

Every config under ``configs/`` outside ``configs/mnist`` (the library's own quick-start) starts
with a header. A base recipe (``*recipe*.yaml``, the files other configs name in ``base:``) has
one line; every other config has three, in this order::

    # paper: SASTC, Table 2 (CIFAR-10)          # METHOD, where the row is (free text)
    # row: ResNet-18 <- WRN-28-4, T=2            # or "STUDENT, T=n" (no teacher)
    # target: 95.12 % top-1                      # or "none (why)"

    # paper: SASTC, teacher of Table 2 (CIFAR-10)
    # row: WRN-28-4 (ANN teacher)                # a teacher config
    # target: none (the paper reports no accuracy for this teacher)

    # paper: SASTC, base recipe (what it is for) # a base recipe: its only header line

``METHOD`` is one of ``METHODS``; names in rows are the papers' (``ResNet-18``), the configs
name zoo models (``resnet19`` with a 64-channel stem). ``tests/test_recipe_table.py`` checks
the headers against the papers' tables and the README table against ``render_table()``.

    python scripts/recipe_table.py           # print the table
    python scripts/recipe_table.py --check   # exit 1 if README.md's table differs
    python scripts/recipe_table.py --write   # replace README.md's table with the rendered one
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "src" / "spikedistill" / "recipes"  # configs/ links here (package data)
README = ROOT / "README.md"
SECTION = "### Paper recipes"
OWN = ("mnist",)  # config folders of the library's own recipes (no paper header)
METHODS = ("SASTC", "CKDSNN", "Rate-BP", "BRD")  # the table's order
DATASETS = ("cifar10", "cifar100", "imagenet", "dvsgesture", "cifar10dvs")  # the table's order

PAPER = re.compile(r"# paper: (?P<method>[A-Za-z-]+), (?P<source>\S.*)")
ROW_STUDENT = re.compile(r"# row: (?P<student>[^<,]+?) <- (?P<teacher>[^<,]+?), T=(?P<T>[1-9]\d*)")
ROW_ALONE = re.compile(r"# row: (?P<student>[^<,]+?), T=(?P<T>[1-9]\d*)")
ROW_TEACHER = re.compile(r"# row: (?P<teacher>[^<,]+?) \(ANN teacher\)")
TARGET = re.compile(r"# target: (?:(?P<value>\d+\.\d\d) % top-1|none \((?P<why>[^()]+)\))")


class HeaderError(ValueError):
    """A config whose header does not follow the format of this module's docstring."""


@dataclass(frozen=True)
class Header:
    path: Path  # the config file
    method: str  # SASTC | CKDSNN | Rate-BP | BRD
    source: str  # where in the paper: "Table 2 (CIFAR-10)", "base recipe (...)", ...
    row: str | None = None  # the row as written ("ResNet-18 <- WRN-28-4, T=2"); None: base
    student: str | None = None  # paper names; a teacher config has only ``teacher``
    teacher: str | None = None
    T: int | None = None
    target: float | None = None  # top-1 %, None: none
    why: str | None = None  # why there is no target

    @property
    def name(self) -> str:
        """``dataset/file.yaml``."""
        return self.path.relative_to(CONFIGS).as_posix()

    @property
    def dataset(self) -> str:
        return self.path.parent.name

    @property
    def is_base(self) -> bool:
        return self.row is None

    @property
    def role(self) -> str:
        """``base``, ``teacher`` (an ANN teacher config) or ``student``."""
        if self.is_base:
            return "base"
        return "teacher" if self.student is None else "student"


def is_base_recipe(path: Path) -> bool:
    """A base recipe (named by other configs' ``base:``; never run alone: tests/test_recipes)."""
    return "recipe" in path.name


def paper_configs() -> list[Path]:
    """Every config that must carry a header (all but the library's own recipes)."""
    return sorted(p for p in CONFIGS.rglob("*.yaml") if p.parent.name not in OWN)


def read_header(path: Path) -> Header:
    """The header of ``path`` (``HeaderError`` naming the file and line if malformed)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    want = 1 if is_base_recipe(path) else 3
    if len(lines) < want:
        raise HeaderError(f"{path}: needs {want} header line(s), the file has {len(lines)}")
    paper = PAPER.fullmatch(lines[0])
    if not paper or paper["method"] not in METHODS:
        raise HeaderError(
            f"{path}:1: expected '# paper: METHOD, SOURCE' with METHOD in {METHODS}, "
            f"got {lines[0]!r}"
        )
    method, source = paper["method"], paper["source"]
    if is_base_recipe(path):
        if not source.startswith("base recipe"):
            raise HeaderError(f"{path}:1: a base recipe's source starts with 'base recipe'")
        return Header(path, method, source)
    if source.startswith("base recipe"):
        raise HeaderError(f"{path}:1: 'base recipe' but the file name has no 'recipe'")
    row_line = lines[1]
    student = ROW_STUDENT.fullmatch(row_line) or ROW_ALONE.fullmatch(row_line)
    teacher = ROW_TEACHER.fullmatch(row_line)
    if not (student or teacher):
        raise HeaderError(
            f"{path}:2: expected '# row: STUDENT <- TEACHER, T=n', '# row: STUDENT, T=n' or "
            f"'# row: TEACHER (ANN teacher)', got {row_line!r}"
        )
    target = TARGET.fullmatch(lines[2])
    if not target:
        raise HeaderError(
            f"{path}:3: expected '# target: NN.NN % top-1' or '# target: none (why)', "
            f"got {lines[2]!r}"
        )
    fields = student.groupdict() if student else teacher.groupdict()  # type: ignore[union-attr]
    return Header(
        path,
        method,
        source,
        row=row_line.removeprefix("# row: "),
        student=fields.get("student"),
        teacher=fields.get("teacher"),
        T=int(fields["T"]) if fields.get("T") else None,
        target=float(target["value"]) if target["value"] else None,
        why=target["why"],
    )


def headers() -> list[Header]:
    """The headers of every paper config (``HeaderError`` at the first malformed one)."""
    return [read_header(p) for p in paper_configs()]


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
