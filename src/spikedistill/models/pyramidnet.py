"""PyramidNet with basic blocks (Han et al.): widths grow by ``alpha / (3 n)`` per block."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..spiking.norm_lif import conv_norm_act
from .base import ZooModel
from .blocks import ActFactory, classifier_head, conv3x3
from .inits import apply_init
from .registry import register_variant


class PyramidBlock(nn.Module):
    """``bn3(conv2(act(bn2(conv1(bn1(x)))))) + pad(pool(x))``: the shortcut is average-pooled
    when strided and zero-padded to the new width (no projection)."""

    fuses_units = True

    def __init__(self, cin: int, cout: int, stride: int, act: ActFactory) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act = act()
        self.conv2 = conv3x3(cout, cout)
        self.bn3 = nn.BatchNorm2d(cout)
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True) if stride > 1 else nn.Identity()
        self.extra_channels = cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(conv_norm_act(self.conv1, self.bn2, self.act, self.bn1(x))))
        short = self.pool(x)
        if self.extra_channels:
            short = F.pad(short, (0, 0, 0, 0, 0, self.extra_channels))
        return out + short


class PyramidNet(ZooModel):
    def __init__(
        self,
        depth: int = 20,
        alpha: float = 200.0,
        num_classes: int = 10,
        in_channels: int = 3,
        init: str = "default",
        **zoo: Any,
    ) -> None:
        """``init``: a weight initialisation of ``models.inits.INITS``."""
        super().__init__(**zoo)
        n = (depth - 2) // 6
        self.stem = nn.Sequential(conv3x3(in_channels, 16), nn.BatchNorm2d(16))
        self.stem_act = nn.Identity()
        width, cin = 16.0, 16
        for i in range(3):
            blocks = []
            for j in range(n):
                width += alpha / (3 * n)
                blocks.append(
                    PyramidBlock(cin, round(width), 2 if i > 0 and j == 0 else 1, self.act)
                )
                cin = round(width)
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.stage_names.append(f"layer{i + 1}")
        pre = [("bn", nn.BatchNorm2d(cin)), ("act", self.act())]
        self.head = classifier_head(cin, num_classes, self.act, pre=pre)
        apply_init(self, init)


register_variant("pyramidnet20", PyramidNet, depth=20, alpha=200.0)
register_variant("pyramidnet110", PyramidNet, depth=110, alpha=48.0)
