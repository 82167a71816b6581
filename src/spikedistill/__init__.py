"""spikedistill: train spiking neural networks by distilling knowledge from pretrained ANNs."""

from typing import Any

from .errors import ConfigError, SpikeDistillError

__version__ = "0.1.0"
__all__ = ["ConfigError", "SpikeDistillError", "__version__", "build_model", "list_models"]


def __getattr__(name: str) -> Any:
    """``build_model`` and ``list_models`` from the zoo, imported when first asked for, so that
    importing a low layer (``spikedistill.checkpoint``, ``spikedistill.errors``) loads no model."""
    if name in ("build_model", "list_models"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'spikedistill' has no attribute {name!r}")
