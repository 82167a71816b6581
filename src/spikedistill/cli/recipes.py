"""``spikedistill configs list`` (the recipes shipped in the package, with their headers) and
``spikedistill configs show NAME`` (one recipe's text). ``recipe:NAME`` runs one:
``spikedistill train recipe:cifar10/sastc_resnet19_from_wrn_28_4_t2``."""

from __future__ import annotations

import argparse
from pathlib import Path


def header(path: Path) -> dict[str, str]:
    """``paper``, ``row``, ``target`` of a recipe (``engine.recipe_headers``; "-" where a base
    recipe has none); the library's own recipes: their first comment line as ``paper``."""
    from ..engine.recipe_headers import OWN, read_header

    if path.parent.name in OWN:
        first = path.read_text(encoding="utf-8").splitlines()[:1]
        paper = (
            "own: " + first[0].lstrip("# ").strip() if first and first[0].startswith("#") else "-"
        )
        return {"paper": paper, "row": "-", "target": "-"}
    head = read_header(path)
    target = f"{head.target:.2f} % top-1" if head.target is not None else f"none ({head.why})"
    return {
        "paper": f"{head.method}, {head.source}",
        "row": head.row or "-",
        "target": "-" if head.is_base else target,
    }


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
