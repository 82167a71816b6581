"""Models from outside the zoo, named ``SOURCE:NAME`` wherever a zoo name is accepted.

- ``torchvision:resnet34``: ``torchvision.models.get_model(NAME, num_classes=K, **options)``
  (3-channel input);
- ``timm:resnet50``: ``timm.create_model(NAME, num_classes=K, in_chans=C, **options)``;
- ``package.module:callable`` (also ``package.module:Class.factory``): your own code, called
  with ``options`` plus whichever of ``num_classes``, ``in_channels``, ``T``, ``neuron``,
  ``neuron_kwargs`` and ``spiking`` its signature takes (the module must be importable: on
  ``PYTHONPATH`` or installed).

torchvision and timm are optional (``pip install spikedistill[vision]``). Their models declare
no ``stage_names``: feature taps infer them (``contract.infer_stage_names``; a torchvision
ResNet gives ``relu, layer1, ..., layer4``) or take module paths.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, described, first_line
from ..registry import Registry
from ..user_code import accepted, find_callable

#: ``source -> builder(name, num_classes, in_channels, options) -> model``
SOURCES: Registry[Callable[..., nn.Module]] = Registry("model source")


#: where the torchvision wheels built for a CPU torch are (PyPI's are built for CUDA torch)
CPU_WHEELS = "https://download.pytorch.org/whl/cpu"


def _import(module: str, package: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name != module.split(".")[0] and err.name != package:
            raise ConfigError(f"{package} does not import: {first_line(err)}") from None
        raise ConfigError(
            f"model names {package}:... need {package}: pip install spikedistill[vision]"
        ) from None
    except Exception as err:  # built for another torch: its C extension does not load
        raise ConfigError(
            f"{package} is installed but does not import with torch {torch.__version__} "
            f"({described(err)}): install the torchvision built for "
            f"this torch (for a CPU torch: pip install torchvision --index-url {CPU_WHEELS})"
        ) from None


@SOURCES.register("torchvision")
def _torchvision(name: str, num_classes: int, in_channels: int, options: dict) -> nn.Module:
    if in_channels != 3:
        raise ConfigError(
            f"torchvision:{name} takes 3-channel images, but the data has {in_channels} channels"
        )
    models = _import("torchvision.models", "torchvision")
    if name not in models.list_models():
        raise ConfigError(f"torchvision has no model {name!r} (torchvision.models.list_models())")
    return models.get_model(name, num_classes=num_classes, **options)


@SOURCES.register("timm")
def _timm(name: str, num_classes: int, in_channels: int, options: dict) -> nn.Module:
    timm = _import("timm", "timm")
    if not timm.is_model(name):
        raise ConfigError(f"timm has no model {name!r} (timm.list_models())")
    return timm.create_model(name, num_classes=num_classes, in_chans=in_channels, **options)


def build_external(
    name: str, num_classes: int, in_channels: int, options: dict[str, Any], **context: Any
) -> nn.Module:
    """The model ``name`` (``SOURCE:NAME`` or ``package.module:callable``) for ``num_classes``
    classes and ``in_channels`` input channels; ``context`` (``spiking``, ``T``, ``neuron``,
    ``neuron_kwargs``) goes to your own callable where its signature takes it."""
    source, _, inner = name.partition(":")
    if source in SOURCES:
        if context.get("spiking"):
            raise ConfigError(f"{name} is an ANN: it can be a teacher, or model.spiking=false")
        return _checked(name, SOURCES.get(source)(inner, num_classes, in_channels, options))
    fn = find_callable(name)
    kwargs = accepted(fn, {"num_classes": num_classes, "in_channels": in_channels, **context})
    try:
        model = fn(**options, **kwargs)
    except TypeError as err:
        raise ConfigError(f"model {name!r} rejected its options: {first_line(err)}") from None
    return _checked(name, model)


def _checked(name: str, model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model {name!r} returned a {type(model).__name__}, not an nn.Module")
    return model
