"""``spikedistill configs list`` (the recipes shipped in the package, with their headers) and
``spikedistill configs show NAME`` (one recipe's text). ``recipe:NAME`` runs one:
``spikedistill train recipe:cifar10/sastc_resnet19_from_wrn_28_4_t2``."""

from __future__ import annotations

import argparse
from pathlib import Path

HEADER = ("paper", "row", "target")  # the header lines of a paper recipe (scripts/recipe_table)


def header(path: Path) -> dict[str, str]:
    """``paper``, ``row``, ``target`` from the file's ``# key: value`` header lines ("-" where
    missing; a base recipe has no row; the library's own recipes: their first comment line)."""
    lines = path.read_text(encoding="utf-8").splitlines()[:3]
    found = {}
    for line in lines:
        key, sep, value = line.removeprefix("# ").partition(": ")
        if line.startswith("# ") and sep and key in HEADER:
            found[key] = value.strip()
    if not found and lines and lines[0].startswith("#"):
        found["paper"] = "own: " + lines[0].lstrip("# ").strip()
    return {key: found.get(key, "-") for key in HEADER}


def run_list(args: argparse.Namespace) -> int:
    from ..engine.schema import config_path, recipe_names

    rows = [("NAME", "PAPER", "ROW", "TARGET")]
    for name in recipe_names():
        head = header(Path(config_path(f"recipe:{name}")))
        rows.append((name, head["paper"], head["row"], head["target"]))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    return 0


def run_show(args: argparse.Namespace) -> int:
    from ..engine.schema import RECIPE, config_path

    name = args.name.removeprefix(RECIPE)
    print(Path(config_path(RECIPE + name)).read_text(encoding="utf-8"), end="")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    configs = sub.add_parser("configs", help="the recipes shipped with spikedistill")
    actions = configs.add_subparsers(
        dest="action", metavar="list|show", required=True, parser_class=type(configs)
    )
    listing = actions.add_parser("list", help="every recipe with its paper, row and target")
    listing.set_defaults(func=run_list)
    show = actions.add_parser("show", help="a recipe's YAML text")
    show.add_argument("name", help="a recipe name from 'configs list', e.g. mnist/teacher")
    show.set_defaults(func=run_show)
