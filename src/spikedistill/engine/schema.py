"""Typed dataclass configs from plain dicts: type checks, unknown keys with the closest valid
key, and dotted ``key=value`` overrides. YAML is read with ``ConfigLoader``: PyYAML's safe
loader without aliases (no "billion laughs"), reading ``1e-3`` as a float."""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..typed import from_dict

__all__ = ["ConfigLoader", "apply_overrides", "config_path", "deep_merge", "from_dict"]
__all__ += ["load_yaml", "recipe_names", "to_dict"]

MAX_BASE_DEPTH = 16  # `base:` files a config may chain through
RECIPES = Path(__file__).resolve().parents[1] / "recipes"  # the shipped configs (package data)
RECIPE = "recipe:"  # `recipe:cifar10/NAME` names RECIPES/cifar10/NAME.yaml


def recipe_names() -> list[str]:
    """The shipped recipes as ``folder/name`` (``recipe:folder/name`` loads one)."""
    return sorted(
        p.relative_to(RECIPES).with_suffix("").as_posix() for p in RECIPES.rglob("*.yaml")
    )


def config_path(path: str) -> str:
    """``path``, or the file of a shipped recipe ``recipe:folder/name`` (``ConfigError`` with the
    closest name if there is none)."""
    if not path.startswith(RECIPE):
        return path
    name = path[len(RECIPE) :].removesuffix(".yaml")
    names = recipe_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        hint = f"; did you mean 'recipe:{close[0]}'?" if close else ""
        raise ConfigError(f"no shipped recipe {name!r}{hint} (see 'spikedistill configs list')")
    return str(RECIPES / f"{name}.yaml")


class ConfigLoader(yaml.SafeLoader):
    """The safe loader, refusing aliases and repeated keys; ``1e-3`` and ``2E5`` are floats
    (YAML 1.2)."""

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            problem = "aliases (*name) are not supported; write the value out"
            raise yaml.composer.ComposerError(None, None, problem, mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the base class refuses it
            if key in seen:
                problem = f"the key {key!r} appears twice in one mapping"
                raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: Any, source: str) -> Any:
    """``text`` (a string or an open file) parsed with ``ConfigLoader``; errors name
    ``source`` on one line."""
    loader = None
    try:
        loader = ConfigLoader(text)
        return loader.get_single_data()
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid YAML in {source}: {' '.join(str(err).split())}") from None
    except RecursionError:
        raise ConfigError(f"invalid YAML in {source}: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def shorten(text: str, limit: int = 60) -> str:
    """``text``, cut to ``limit`` characters with ``...``."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict (values parsed as YAML scalars/lists)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        value = parse_yaml(raw, f"override {shorten(item)!r}") if raw else None
        set_dotted(data, key, value, f"override {item!r}")
    return data


def set_dotted(data: dict[str, Any], key: str, value: Any, what: str) -> None:
    """``data[a][b][c] = value`` for ``key`` ``"a.b.c"``, making the sections as needed;
    ``what`` names the setting in the error when a section is a value."""
    *sections, leaf = key.split(".")
    node = data
    for section in sections:
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{what}: {section!r} is not a section")
    node[leaf] = value


def deep_merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``child`` over ``base``, merging nested mappings key by key."""
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_yaml(path: str, _chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load``; errors name the file and line.

    A top-level ``base: other.yaml`` (relative to this file, or ``recipe:folder/name``) is loaded
    first and this file's keys are deep-merged over it: recipes shared by several experiments
    live in one file. ``path`` may name a shipped recipe, ``recipe:folder/name``.
    """
    path = config_path(path)
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: 'base' must be a file name, got {base!r}")
    base_path = os.path.normpath(os.path.join(os.path.dirname(path), config_path(base)))
    if base_path in _chain or base_path == os.path.normpath(path):
        raise ConfigError(f"{path}: circular 'base' chain through {base_path}")
    if len(_chain) >= MAX_BASE_DEPTH:
        raise ConfigError(f"{path}: 'base' chains through more than {MAX_BASE_DEPTH} files")
    return deep_merge(load_yaml(base_path, (*_chain, os.path.normpath(path))), data)


def _read_yaml(path: str) -> dict[str, Any]:
    if os.path.exists(path) and not os.path.isfile(path):  # a folder, a pipe, a device
        raise ConfigError(f"config {path!r} is not a regular file")
    try:
        with open(path, encoding="utf-8") as fh:
            data = parse_yaml(fh, path)
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} does not exist") from None
    except (UnicodeDecodeError, IsADirectoryError) as err:
        raise ConfigError(f"cannot read config {path!r}: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path!r} must be a YAML mapping, got {type(data).__name__}")
    return data
