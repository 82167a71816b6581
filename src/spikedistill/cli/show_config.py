"""``spikedistill config show CFG [overrides]`` (the resolved config) and ``spikedistill config
schema`` (every key: type, default, allowed values, meaning)."""

from __future__ import annotations

import argparse


def run_show(args: argparse.Namespace) -> int:
    import yaml

    from ..engine.config import load_config

    cfg = load_config(args.config, args.overrides)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=False), end="")
    return 0


def run_schema(args: argparse.Namespace) -> int:
    from .config_schema import as_json, as_table, config_keys, method_option_keys

    keys = config_keys() + method_option_keys(args.method)
    print(as_json(keys) if args.json else as_table(keys))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    config = sub.add_parser("config", help="show a resolved config, or every config key")
    actions = config.add_subparsers(
        dest="action", metavar="show|schema", required=True, parser_class=type(config)
    )
    show = actions.add_parser(
        "show", help="the config after base: and overrides, with every default, as YAML"
    )
    show.add_argument(
        "config", help="experiment YAML file, or recipe:NAME (spikedistill configs list)"
    )
    show.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=5")
    show.set_defaults(func=run_show)
    schema = actions.add_parser(
        "schema", help="every config key: type, default, allowed values, meaning"
    )
    schema.add_argument("--json", action="store_true", help="a JSON list, for programs")
    schema.add_argument(
        "--method",
        action="append",
        default=[],
        metavar="package.module:Class",
        help="also list the options of your own method (repeatable)",
    )
    schema.set_defaults(func=run_schema)
