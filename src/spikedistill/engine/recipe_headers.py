"""The paper recipes' headers, read and checked.

Every config under ``recipes/`` (``configs/`` in the repository) outside ``mnist/`` (the
library's own quick-start) starts with a header. A base recipe (``*recipe*.yaml``, the files
other configs name in ``base:``) has one line; every other config has three, in this order::

    # paper: SASTC, Table 2 (CIFAR-10)          # METHOD, where the row is (free text)
    # row: ResNet-18 <- WRN-28-4, T=2            # or "STUDENT, T=n" (no teacher)
    # target: 95.12 % top-1                      # or "none (why)"

    # paper: SASTC, teacher of Table 2 (CIFAR-10)
    # row: WRN-28-4 (ANN teacher)                # a teacher config
    # target: none (the paper reports no accuracy for this teacher)

    # paper: SASTC, base recipe (what it is for) # a base recipe: its only header line

``METHOD`` is one of ``METHODS``; names in rows are the papers' (``ResNet-18``), the configs
name zoo models (``resnet19`` with a 64-channel stem). ``tests/test_recipe_table.py`` checks
the headers against the papers' tables; ``scripts/recipe_table.py`` renders the README's table
from them and ``spikedistill configs list`` shows them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .schema import RECIPES as CONFIGS

OWN = ("mnist",)  # config folders of the library's own recipes (no paper header)
METHODS = ("SASTC", "CKDSNN", "Rate-BP", "BRD")  # the table's order

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
