"""spikedistill: train spiking neural networks by distilling knowledge from pretrained ANNs."""

from .errors import ConfigError, SpikeDistillError
from .models import build_model, list_models

__version__ = "0.1.0"
__all__ = ["ConfigError", "SpikeDistillError", "__version__", "build_model", "list_models"]
