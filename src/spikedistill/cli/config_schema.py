"""Every key of the experiment config with its type, default, allowed values and meaning
(``spikedistill config schema``). A key's meaning is its field's inline comment in
``engine/config.py``, and a method option's the first sentence of its bullet under
``Options:`` in the method's docstring (both read from the source, so each stays the one
place to write it)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import json
import re
import textwrap
import tokenize
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..engine.config import ExperimentConfig

EXTERNAL = ["torchvision:NAME", "timm:NAME", "package.module:callable"]  # models outside the zoo


@dataclass(frozen=True)
class Key:
    key: str  # dotted, e.g. "optim.lr"
    type: str  # the annotation as written, e.g. "float | None"
    default: Any
    allowed: list[str] | None  # the values it takes, where they are a known set
    meaning: str


def field_comments(cls: type) -> dict[str, str]:
    """Each field of dataclass ``cls`` -> the comment ending its line ("" if none)."""
    source = textwrap.dedent(inspect.getsource(cls))
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    comments = {
        t.start[0]: t.string.lstrip("#").strip() for t in tokens if t.type == tokenize.COMMENT
    }
    body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
    return {
        node.target.id: comments.get(node.end_lineno or node.lineno, "")
        for node in body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }


def type_text(hint: Any) -> str:
    """An annotation with its aliases resolved, as a config's reader needs it:
    ``Sequence[str | int] | None`` for ``Sequence[TapSpec] | None`` (a path or an index);
    a number's bounds are listed with the allowed values."""
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return type_text(typing.get_args(hint)[0])
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        return " | ".join("None" if a is type(None) else type_text(a) for a in args)
    text = hint.__name__ if isinstance(hint, type) else str(hint)
    return text.replace("typing.", "").replace("collections.abc.", "")


def option_meanings(doc: str | None) -> dict[str, str]:
    """The ``Options:`` section of a docstring: ``- ``a`` / ``b``: meaning`` bullets
    (continued on indented lines) -> {option: the meaning's first sentence}."""
    lines = inspect.cleandoc(doc or "").splitlines()
    if "Options:" not in lines:
        return {}
    bullets: list[str] = []
    for line in lines[lines.index("Options:") + 1 :]:
        if line.startswith("- "):
            bullets.append(line[2:])
        elif line.startswith("  ") and bullets:
            bullets[-1] += " " + line.strip()
        elif line or bullets:
            break
    meanings = {}
    for bullet in bullets:
        names, _, text = bullet.partition(": ")
        first = text.split(". ")[0].rstrip(";.").replace("``", "`")
        meanings |= dict.fromkeys(re.findall(r"``(\w+)``", names), first)
    return meanings


def allowed_values() -> dict[str, list[str]]:
    """The keys whose values are a known set, with that set."""
    from .. import data, distill, models  # noqa: F401  (fill the registries)
    from ..data.registry import DATASETS
    from ..data.transforms import TRANSFORM_NAMES
    from ..distill.base import METHODS
    from ..metrics.stm import STM_VARIANTS
    from ..models.registry import MODELS
    from ..spiking.config import NEURON_PRESETS
    from ..spiking.kernels import LIF_BACKENDS

    return {
        "data.name": [*DATASETS.names(), "package.module:callable"],
        "data.augment": list(TRANSFORM_NAMES),
        "model.name": [*MODELS.names(), *EXTERNAL],
        "model.neuron": NEURON_PRESETS.names(),
        "optim.name": ["sgd", "adamw"],
        "sched.name": ["none", "step", "multistep", "cosine"],
        "train.amp": ["none", "bf16", "fp16"],
        "train.device": ["auto", "cpu", "cuda", "cuda:N"],
        "train.backprop": ["bptt", "rate"],
        "train.stm_variant": list(STM_VARIANTS),
        "train.neuron_backend": ["auto", *LIF_BACKENDS.names()],
        "teacher.name": [*MODELS.names(), *EXTERNAL],
        "distill.method": ["none", *METHODS.names(), "METHOD+METHOD"],
    }


def config_keys(cls: type = ExperimentConfig, prefix: str = "") -> list[Key]:
    """Every leaf key of ``cls`` (sections recurse), in the order of the dataclasses."""
    allowed = allowed_values() if not prefix else {}
    return _keys(cls, prefix, allowed)


def method_option_keys(own: Sequence[str] = ()) -> list[Key]:
    """``distill.options.METHOD.OPTION`` for every method, and your own ones named in ``own``
    (``package.module:Class``): the type and default of its constructor's keyword (what
    ``distill.options`` is checked against when a config loads)."""
    from .. import distill  # noqa: F401  (fill the registry)
    from ..distill.base import METHODS, method_class
    from ..engine.options import SET_BY_TRAINER
    from ..typed import limit_of, parameter_types

    keys = []
    classes = [METHODS.get(name) for name in METHODS.names()] + [method_class(m) for m in own]
    for cls in classes:
        name = cls.name
        params = inspect.signature(cls.__init__).parameters
        meanings = option_meanings(cls.__doc__)
        for option, hint in parameter_types(cls, skip=("student", "teacher")).items():
            param = params[option]
            default = None if param.default is inspect.Parameter.empty else param.default
            meaning = meanings.get(option, "")
            if option in SET_BY_TRAINER:
                default, meaning = None, SET_BY_TRAINER[option]
            choices = literal_choices(hint)
            limit = limit_of(hint)
            keys.append(
                Key(
                    f"distill.options.{name}.{option}",
                    "str" if choices else type_text(hint),
                    default,
                    list(choices) if choices else [str(limit)] if limit else None,
                    meaning,
                )
            )
    return keys


def literal_choices(hint: Any) -> tuple[Any, ...] | None:
    """The values of a ``Literal[...]`` annotation, also inside ``Optional`` (with None)."""
    if typing.get_origin(hint) is typing.Literal:
        return typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        inner = [literal_choices(a) for a in args if a is not type(None)]
        if len(inner) == 1 and inner[0] is not None:
            return (*inner[0], *([None] if type(None) in args else []))
    return None


def _keys(cls: type, prefix: str, allowed: dict[str, list[str]]) -> list[Key]:
    comments, hints, keys = field_comments(cls), typing.get_type_hints(cls), []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            keys += _keys(hints[f.name], f"{key}.", allowed)
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        keys.append(Key(key, str(f.type), default, allowed.get(key), comments[f.name]))
    return keys


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def as_json(keys: list[Key]) -> str:
    return json.dumps([dataclasses.asdict(k) for k in keys], indent=2)


def as_table(keys: list[Key]) -> str:
    """Columns KEY, TYPE, DEFAULT, MEANING; allowed values on an indented line below."""
    rows = [("KEY", "TYPE", "DEFAULT", "MEANING")]
    rows += [(k.key, k.type, _show(k.default), k.meaning) for k in keys]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for i, row in enumerate(rows):
        lines.append(
            "  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
        )
        if i and keys[i - 1].allowed:
            lines.append(" " * (widths[0] + 2) + "allowed: " + " | ".join(keys[i - 1].allowed))
    return "\n".join(line.rstrip() for line in lines)
