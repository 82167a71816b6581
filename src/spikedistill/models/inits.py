"""Reference weight initialisations, chosen by name with a family's ``init`` option.

``apply_init(model, name)`` re-initialises a freshly built model in place:

- ``default``: leaves PyTorch's initialisation alone (no random numbers drawn), so a default
  build is bit-identical to one without the option;
- ``kaiming_normal``: the SASTC teachers' (``ieveresthd/SASTC``, ``CIFAR10/models/ann``:
  ``resnet19.py``, ``wrn.py``, ``pyramidnet.py``, ``vgg16.py``): every convolution weight
  ``~ N(0, 2 / fan_out)`` (``kaiming_normal_``, ``mode="fan_out"``, ``nonlinearity="relu"``),
  convolution biases 0, BatchNorm weight 1 and bias 0; linear layers keep PyTorch's default;
- ``normal_0.5``: Rate-BP's VGG (``Tab-ct/rate-based-backpropagation``, ``model/vgg.py``):
  convolution and linear weights ``~ N(0, 0.5)``, their biases 0, BatchNorm weight 1, bias 0.

A new scheme is a function ``(model) -> None`` registered in ``INITS``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..registry import Registry

INITS: Registry[Callable[[nn.Module], None]] = Registry("weight initialisation")

_Conv = nn.modules.conv._ConvNd
_BatchNorm = nn.modules.batchnorm._BatchNorm


def _unit_batchnorms(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, _BatchNorm) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@INITS.register("default")
def default_init(model: nn.Module) -> None:
    """PyTorch's own initialisation, untouched."""


@INITS.register("kaiming_normal")
def kaiming_normal_init(model: nn.Module) -> None:
    """Convolutions ``kaiming_normal_(fan_out, relu)`` with zero bias; BatchNorm ``1, 0``."""
    for m in model.modules():
        if isinstance(m, _Conv):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    _unit_batchnorms(model)


@INITS.register("normal_0.5")
def normal_half_init(model: nn.Module) -> None:
    """Convolution and linear weights ``N(0, 0.5)`` with zero bias; BatchNorm ``1, 0``."""
    for m in model.modules():
        if isinstance(m, _Conv | nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    _unit_batchnorms(model)


def apply_init(model: nn.Module, name: str) -> None:
    """Re-initialise ``model`` in place with the scheme registered as ``name``."""
    INITS.get(name)(model)
