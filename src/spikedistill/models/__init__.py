"""The model zoo: every architecture builds as ANN or SNN with the same module names."""

from . import bottleneck, pyramidnet, resnet, small, vgg, wrn  # noqa: F401  (registers the families)
from .base import ZooModel
from .registry import MODELS, build_model, list_models, register_variant

__all__ = ["MODELS", "ZooModel", "build_model", "list_models", "register_variant"]
