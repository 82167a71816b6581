"""spikedistill: train spiking neural networks by distilling knowledge from pretrained ANNs."""

from typing import Any

from .errors import ConfigError, SpikeDistillError

__version__ = "0.1.0"
#: the public API beyond the errors: name -> the module that defines it, imported when first
#: asked for, so that importing a low layer (``spikedistill.checkpoint``) loads no model
_LAZY = {
    "build_model": "models",
    "list_models": "models",
    "load_model": "engine.load",
    "train": "engine.modules_trainer",
}
__all__ = ["ConfigError", "SpikeDistillError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'spikedistill' has no attribute {name!r}")
