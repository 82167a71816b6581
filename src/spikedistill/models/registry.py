"""The model registry, ``register_variant`` and ``build_model``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from ..registry import Registry
from .base import ZooModel

MODELS: Registry[Callable[..., ZooModel]] = Registry("model")


def _init_params(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is ZooModel or (issubclass(klass, ZooModel) and "__init__" in vars(klass)):
            params = inspect.signature(klass.__init__).parameters.values()
            names |= {p.name for p in params if p.name != "self" and p.kind is not p.VAR_KEYWORD}
    return names


def register_variant(name: str, family: type[ZooModel], **fixed: Any) -> None:
    """Register ``name`` as ``family(**fixed)``; callers may still override any option."""

    def builder(num_classes: int = 10, spiking: bool = False, **kwargs: Any) -> ZooModel:
        return family(num_classes=num_classes, spiking=spiking, **{**fixed, **kwargs})

    builder.family = family  # type: ignore[attr-defined]
    builder.__doc__ = (
        f"{name}: {family.__name__}({', '.join(f'{k}={v!r}' for k, v in fixed.items())})"
    )
    MODELS.register(name)(builder)


def build_model(name: str, num_classes: int = 10, spiking: bool = False, **kwargs: Any) -> ZooModel:
    """Build a zoo architecture as ANN (``spiking=False``) or SNN.

    Common options: ``in_channels``; SNN only: ``T``, ``neuron`` (preset name or
    ``NeuronConfig``), ``neuron_kwargs`` (overrides), ``batch_first``. Others are per family.
    """
    builder = MODELS.get(name)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    valid = _init_params(builder.family)  # type: ignore[attr-defined]
    unknown = sorted(set(kwargs) - valid)
    if unknown:
        raise ConfigError(
            f"unknown option(s) {unknown} for model {name!r}; valid: {', '.join(sorted(valid))}"
        )
    return builder(num_classes=num_classes, spiking=spiking, **kwargs)


def list_models() -> list[str]:
    return MODELS.names()
