"""The interface every distillation method implements.

A method is an ``nn.Module`` (so its trainable extras are optimised with the student and saved
in checkpoints). It names the feature taps it needs, builds its modules once from the real
feature shapes, and maps a ``DistillBatch`` to named loss terms, each already multiplied by its
weight. Adding a method means one file with one class and one ``@register_method`` line; the
class docstring lists its options under ``Options:``, one ``- ``name``: meaning`` bullet each
(``config schema`` shows each bullet's first sentence).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from torch import nn

from ..errors import ConfigError, UnknownNameError
from ..registry import Registry
from ..typed import checked_arguments
from ..user_code import find_callable, is_external


@dataclass
class DistillBatch:
    """What a method sees for one training batch (``S`` = student, ``A`` = ANN teacher).

    - ``y``: labels ``[B]``;
    - ``student_logits``: ``[B, K]``, the mean over time of ``step_logits`` ``[T, B, K]``
      (``T = 1`` for an ANN student, and under Rate-BP, ``train.backprop: rate``, whose
      training pass sees the rates: there the features have ``T = 1`` too);
    - ``teacher_logits``: ``[B, K]``, detached;
    - ``student_features[path]``: ``[T, B, C, H, W]`` (time-first; ``T = 1`` for an ANN);
    - ``teacher_features[path]``: ``[B, C, H, W]``, detached;
    - ``teacher``: the frozen teacher module (e.g. its classifier weights for CAMs).
    """

    y: torch.Tensor
    student_logits: torch.Tensor
    step_logits: torch.Tensor
    teacher_logits: torch.Tensor
    student_features: dict[str, torch.Tensor] = field(default_factory=dict)
    teacher_features: dict[str, torch.Tensor] = field(default_factory=dict)
    teacher: nn.Module | None = None


class DistillMethod(nn.Module):
    """Base class. A subclass is constructed as ``Method(student, teacher, **options)`` (the
    options come from the config's ``distill.options.<name>`` and must have defaults); it
    overrides ``forward``, and feature methods also ``student_taps`` / ``teacher_taps``
    (module paths, resolved with ``taps.resolve_taps``) and ``build`` (create modules from
    the first batch's real shapes). Keep references to ``student``/``teacher`` out of the
    module tree (they are not this method's parameters)."""

    name: str = ""

    def student_taps(self) -> list[str]:
        return []

    def teacher_taps(self) -> list[str]:
        return []

    def build(self, batch: DistillBatch) -> None:
        """Called once, before training, with a batch of the real shapes (no grad)."""

    def set_epoch(self, epoch: int) -> None:
        """Called at the start of every (0-based) epoch, for schedules inside a method."""

    def forward(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        raise NotImplementedError


METHODS: Registry[type[DistillMethod]] = Registry("distillation method")
M = TypeVar("M", bound=type[DistillMethod])


def register_method(name: str) -> Callable[[M], M]:
    """Register a method class under ``name`` (its ``name`` attribute, set here if the class
    leaves it empty). Its constructor checks each option annotated with choices (``Literal``)
    or a limit (``typed.Bounds``, ``typed.MinItems``) as a config is checked, naming
    ``"<name> <option>"``."""

    def decorator(cls: M) -> M:
        if cls.name and cls.name != name:
            raise ConfigError(
                f"register_method({name!r}) on {cls.__qualname__}, whose name is {cls.name!r}: "
                "the two must be the same (the config's key and the loss terms' prefix)"
            )
        cls.name = check_method_class(name, cls)
        cls.__init__ = checked_arguments(cls.__init__, name)  # type: ignore[method-assign]
        return METHODS.register(name)(cls)

    return decorator


def check_method_class(name: str, cls: type) -> str:
    """``name`` if it can key a method's options and module (a Python identifier), and
    every option of ``cls`` has a default (a config may leave any of them out)."""
    if not name.isidentifier():
        raise ConfigError(
            f"{cls.__qualname__}: a method's name is a Python identifier (its options' key in "
            f"distill.options, its loss terms' name), not {name!r}"
        )
    parameters = list(inspect.signature(cls.__init__).parameters.values())[3:]  # self, S, A
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    bare = [p.name for p in parameters if p.default is p.empty and p.kind not in variadic]
    if bare:
        raise ConfigError(
            f"method {name!r}: its option {bare[0]!r} has no default; every option needs one "
            "(Method(student, teacher, **options))"
        )
    return name


def method_class(name: str) -> type[DistillMethod]:
    """The method ``name`` names in ``distill.method``: a registered one, or your own
    ``package.module:Class`` (a ``DistillMethod`` subclass; its ``name`` attribute keys its
    options)."""
    if not is_external(name):
        if name not in METHODS:
            raise UnknownNameError(
                f"{METHODS.unknown_message(name)} (your own method: name it as "
                "package.module:Class, importable here)"
            )
        return METHODS.get(name)
    cls = find_callable(name, "distillation method")
    if not (isinstance(cls, type) and issubclass(cls, DistillMethod)):
        raise ConfigError(f"distillation method {name!r} is not a DistillMethod subclass")
    check_method_class(cls.name, cls)
    return cls
