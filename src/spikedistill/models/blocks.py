"""Building blocks shared by the model families. ``act`` is a factory of fresh activations."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Literal, get_args

import torch
from torch import nn

from ..errors import ConfigError
from ..spiking.fusion import FusedSequential
from ..spiking.layers import AdaptiveAvgPool2d
from ..spiking.norm_lif import conv_norm_act

ActFactory = Callable[[], nn.Module]
HeadAct = Literal["neuron", "none"]
BlockAct = Literal["neuron", "relu"]
HEAD_ACTS, BLOCK_ACTS = get_args(HeadAct), get_args(BlockAct)


def relu() -> nn.Module:
    """A fresh ``ReLU``, whether the model is an ANN or an SNN."""
    return nn.ReLU(inplace=True)


def pick_act(act: ActFactory, choice: str, valid: Sequence[str]) -> ActFactory | None:
    """The activation factory an option names (one of ``valid``): ``neuron`` = the model's own
    ``act`` (a LIF in an SNN, a ReLU in an ANN), ``relu`` = a ReLU in both, ``none`` = none."""
    if choice not in valid:
        raise ConfigError(f"unknown activation {choice!r} (valid: {', '.join(valid)})")
    return {"neuron": act, "relu": relu, "none": None}[choice]


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
        self,
        cin: int,
        cout: int,
        stride: int,
        act: ActFactory,
        shortcut_kind: str = "conv",
        out_act: ActFactory | None = None,
    ) -> None:
        """``out_act``: the factory of ``act2`` (after the sum), ``act`` when not given."""
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = act()
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = shortcut(cin, cout, stride, shortcut_kind)
        self.act2 = (out_act or act)()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = conv_norm_act(self.conv1, self.bn1, self.act1, x)
        return conv_norm_act(self.conv2, self.bn2, self.act2, out, residual=self.shortcut(x))


def classifier_head(
    cin: int,
    num_classes: int,
    act: ActFactory | None,
    hidden: int | Sequence[int] | None = None,
    pre: list[tuple[str, nn.Module]] | None = None,
    pool: nn.Module | None = None,
) -> nn.Sequential:
    """``[pre ->] pool -> flatten [-> fc1 -> act -> fc2 -> act2 ...] -> fc``: one hidden linear
    layer per ``hidden`` width, each followed by an activation unless ``act`` is None (a purely
    linear classifier). The final linear layer is ``fc``."""
    layers: list[tuple[str, nn.Module]] = list(pre or [])
    layers += [("pool", pool or AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten())]
    widths = ([hidden] if hidden else []) if isinstance(hidden, int) else list(hidden or [])
    for i, width in enumerate(widths, start=1):
        layers.append((f"fc{i}", nn.Linear(cin, width)))
        if act is not None:
            layers.append(("act" if i == 1 else f"act{i}", act()))
        cin = width
    layers.append(("fc", nn.Linear(cin, num_classes)))
    return FusedSequential(OrderedDict(layers))
