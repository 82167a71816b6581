"""The model registry, ``register_variant`` and ``build_model``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..errors import ConfigError
from ..registry import Registry
from ..typed import check_options, parameter_types
from ..user_code import is_external
from .base import ZooModel
from .external import build_external

MODELS: Registry[Callable[..., ZooModel]] = Registry("model")


def option_types(name: str) -> dict[str, Any]:
    """The options model ``name`` takes (its family's and ``ZooModel``'s ``__init__``
    parameters but ``num_classes`` and ``spiking``) with their annotations."""
    family = MODELS.get(name).family  # type: ignore[attr-defined]
    types: dict[str, Any] = {}
    for klass in reversed(family.__mro__):
        if klass is ZooModel or (issubclass(klass, ZooModel) and "__init__" in vars(klass)):
            types.update(parameter_types(klass, skip=("num_classes", "spiking")))
    return types


def _sizes(value: Any) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    return [v for item in value for v in _sizes(item)] if isinstance(value, list | tuple) else []


def check_model_options(name: str, options: dict[str, Any], path: str = "options") -> dict:
    """``options`` of model ``name`` checked against its signature; integer options (widths,
    depths, channels, T) must be >= 1."""
    checked = check_options(options, option_types(name), path, f"model {name!r}")
    for key, value in checked.items():
        if any(v < 1 for v in _sizes(value)):
            raise ConfigError(f"{path}.{key} must be >= 1, got {value!r}")
    return checked


def register_variant(name: str, family: type[ZooModel], **fixed: Any) -> None:
    """Register ``name`` as ``family(**fixed)``; callers may still override any option."""

    def builder(num_classes: int = 10, spiking: bool = False, **kwargs: Any) -> ZooModel:
        return family(num_classes=num_classes, spiking=spiking, **{**fixed, **kwargs})

    builder.family = family  # type: ignore[attr-defined]
    builder.__doc__ = (
        f"{name}: {family.__name__}({', '.join(f'{k}={v!r}' for k, v in fixed.items())})"
    )
    MODELS.register(name)(builder)


#: what ``build_model`` hands an external model's callable where its signature takes it
CONTEXT_OPTIONS = ("T", "neuron", "neuron_kwargs")


def build_model(
    name: str, num_classes: int = 10, spiking: bool = False, **kwargs: Any
) -> nn.Module:
    """Build a zoo architecture as ANN (``spiking=False``) or SNN, or a model from outside the
    zoo (``torchvision:NAME``, ``timm:NAME``, ``package.module:callable``; see ``external``).

    Common options: ``in_channels``; SNN only: ``T``, ``neuron`` (preset name or
    ``NeuronConfig``), ``neuron_kwargs`` (overrides), ``batch_first``. Others are per family.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    if is_external(name):
        in_channels = kwargs.pop("in_channels", 3)
        context = {k: kwargs.pop(k) for k in CONTEXT_OPTIONS if k in kwargs}
        return build_external(name, num_classes, in_channels, kwargs, spiking=spiking, **context)
    builder = MODELS.get(name)
    kwargs = check_model_options(name, kwargs)
    model = builder(num_classes=num_classes, spiking=spiking, **kwargs)
    model.zoo_spec = {"name": name, **kwargs}  # how it was built (a config records it)
    return model


def list_models() -> list[str]:
    return MODELS.names()
