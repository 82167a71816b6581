"""Wide bottleneck ResNets (torchvision-style post-activation bottleneck blocks), as SASTC's
"WRN-16-2" student.

SASTC's reference student ``wrn_16_2_snn`` (``ieveresthd/SASTC``,
``CIFAR10/models/snn/wrnkd.py``) is not the standard WRN-16-2 (0.7 M parameters) but a wide
bottleneck ResNet: a 3x3 64-channel stem (conv + BN + act), three stages of ``[2, 1, 1]``
bottleneck blocks with ``planes`` 128 / 256 / 512, inner width ``planes * width_per_group / 64``
(width_per_group 128: 256 / 512 / 1024) and output ``planes * 4`` (512 / 1024 / 2048), stride 2
in the 3x3 convolution of each later stage's first block, then global average pooling and
fc 2048-256 -> act -> fc 256-K. Every activation of the SNN is a LIF.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..spiking.norm_lif import conv_norm_act
from .base import ZooModel
from .blocks import HEAD_ACTS, ActFactory, HeadAct, classifier_head, conv3x3, pick_act, shortcut
from .inits import apply_init
from .registry import register_variant


class Bottleneck(nn.Module):
    """``act3(bn3(conv3(act2(bn2(conv2(act1(bn1(conv1(x)))))))) + shortcut(x))``: 1x1 conv to
    ``width``, 3x3 conv (strided), 1x1 conv to ``cout``; the shortcut is a strided 1x1
    convolution + BN when the shape changes."""

    fuses_units = True

    def __init__(self, cin: int, width: int, cout: int, stride: int, act: ActFactory) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = act()
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = act()
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = shortcut(cin, cout, stride)
        self.act3 = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = conv_norm_act(self.conv1, self.bn1, self.act1, x)
        out = conv_norm_act(self.conv2, self.bn2, self.act2, out)
        return conv_norm_act(self.conv3, self.bn3, self.act3, out, residual=self.shortcut(x))


class BottleneckResNet(ZooModel):
    def __init__(
        self,
        planes: Sequence[int],
        depths: Sequence[int],
        num_classes: int = 10,
        stem_channels: int = 64,
        width_per_group: int = 64,
        expansion: int = 4,
        head_hidden: int | None = None,
        head_act: HeadAct = "neuron",
        in_channels: int = 3,
        init: str = "default",
        **zoo: Any,
    ) -> None:
        """Stage ``i``: ``depths[i]`` bottlenecks of inner width ``planes[i] * width_per_group
        / 64`` and output ``planes[i] * expansion``; stage 1 keeps the resolution, the others
        halve it. ``head_hidden``: a hidden linear layer of the head, followed by the model's
        activation (``head_act="neuron"``) or none (``"none"``). ``init``: a weight
        initialisation of ``models.inits.INITS``."""
        super().__init__(**zoo)
        self.stem = nn.Sequential(
            conv3x3(in_channels, stem_channels), nn.BatchNorm2d(stem_channels)
        )
        self.stem_act = self.act()
        cin = stem_channels
        for i, (plane, depth) in enumerate(zip(planes, depths, strict=True)):
            width, cout = plane * width_per_group // 64, plane * expansion
            blocks = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(Bottleneck(cin, width, cout, stride, self.act))
                cin = cout
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.stage_names.append(f"layer{i + 1}")
        act = pick_act(self.act, head_act, HEAD_ACTS)
        self.head = classifier_head(cin, num_classes, act, hidden=head_hidden)
        apply_init(self, init)


# SASTC's "WRN-16-2" student: widen factor 2 as width_per_group 64 * 2, blocks [2, 1, 1].
register_variant(
    "wrn_16_2_sastc",
    BottleneckResNet,
    planes=[128, 256, 512],
    depths=[2, 1, 1],
    width_per_group=128,
    head_hidden=256,
)
