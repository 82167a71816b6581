"""Building blocks shared by the model families. ``act`` is a factory of fresh activations."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from ..spiking.fusion import FusedSequential
from ..spiking.layers import AdaptiveAvgPool2d
from ..spiking.norm_lif import conv_norm_act

ActFactory = Callable[[], nn.Module]


def conv3x3(cin: int, cout: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)


def conv_bn(cin: int, cout: int, stride: int = 1, bias: bool = False) -> nn.Sequential:
    """3x3 convolution + BatchNorm (the stateless part of a layer; add the activation)."""
    return nn.Sequential(conv3x3(cin, cout, stride, bias), nn.BatchNorm2d(cout))


def shortcut(cin: int, cout: int, stride: int, kind: str = "conv") -> nn.Module:
    """Identity, or a projection when the shape changes: ``conv`` = 1x1 conv (strided) + BN,
    ``avgpool_conv`` = AvgPool(stride) + 1x1 conv + BN (the CKDSNN ResNet-19)."""
    if stride == 1 and cin == cout:
        return nn.Identity()
    if kind == "conv":
        return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    if kind == "avgpool_conv":
        pool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        return nn.Sequential(pool, nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
    raise ValueError(f"unknown shortcut kind {kind!r} (valid: conv, avgpool_conv)")


class BasicBlock(nn.Module):
    """Post-activation residual block: ``act(bn2(conv2(act(bn1(conv1(x))))) + shortcut(x))``."""

    fuses_units = True

    def __init__(
        self, cin: int, cout: int, stride: int, act: ActFactory, shortcut_kind: str = "conv"
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = act()
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = shortcut(cin, cout, stride, shortcut_kind)
        self.act2 = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = conv_norm_act(self.conv1, self.bn1, self.act1, x)
        return conv_norm_act(self.conv2, self.bn2, self.act2, out, residual=self.shortcut(x))


def classifier_head(
    cin: int,
    num_classes: int,
    act: ActFactory,
    hidden: int | None = None,
    pre: list[tuple[str, nn.Module]] | None = None,
    pool: nn.Module | None = None,
) -> nn.Sequential:
    """``[pre ->] pool -> flatten [-> fc1 -> act] -> fc``. The final linear layer is ``fc``."""
    layers: list[tuple[str, nn.Module]] = list(pre or [])
    layers += [("pool", pool or AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten())]
    if hidden:
        layers += [("fc1", nn.Linear(cin, hidden)), ("act", act())]
        cin = hidden
    layers.append(("fc", nn.Linear(cin, num_classes)))
    return FusedSequential(OrderedDict(layers))
