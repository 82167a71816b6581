"""Wide ResNets (pre-activation; Zagoruyko & Komodakis, as in RepDistiller): ``wrn_D_K``.

Stage outputs are pre-activation residual sums; the final BN + activation sit in the head.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..spiking.norm_lif import conv_norm_act, norm_act
from .base import ZooModel
from .blocks import ActFactory, classifier_head, conv3x3
from .inits import apply_init
from .registry import register_variant


class PreActBlock(nn.Module):
    """``conv2(act(bn2(conv1(a)))) + shortcut`` with ``a = act(bn1(x))``; the projection
    shortcut (1x1 conv, when channels change) reads ``a``, the identity reads ``x``."""

    fuses_units = True

    def __init__(self, cin: int, cout: int, stride: int, act: ActFactory) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.act1 = act()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act2 = act()
        self.conv2 = conv3x3(cout, cout)
        self.shortcut = None if cin == cout else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = norm_act(self.bn1, self.act1, x)
        short = x if self.shortcut is None else self.shortcut(a)
        return self.conv2(conv_norm_act(self.conv1, self.bn2, self.act2, a)) + short


class WideResNet(ZooModel):
    def __init__(
        self,
        depth: int,
        widen: int,
        num_classes: int = 10,
        in_channels: int = 3,
        init: str = "default",
        **zoo: Any,
    ) -> None:
        """``init``: a weight initialisation of ``models.inits.INITS``."""
        super().__init__(**zoo)
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        self.stem = conv3x3(in_channels, 16)
        self.stem_act = nn.Identity()
        cin = 16
        for i, width in enumerate((16 * widen, 32 * widen, 64 * widen)):
            blocks = []
            for j in range(n):
                blocks.append(PreActBlock(cin, width, 2 if i > 0 and j == 0 else 1, self.act))
                cin = width
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.stage_names.append(f"layer{i + 1}")
        pre = [("bn", nn.BatchNorm2d(cin)), ("act", self.act())]
        self.head = classifier_head(cin, num_classes, self.act, pre=pre)
        apply_init(self, init)


for _depth, _widen in ((16, 1), (16, 2), (16, 4), (28, 4), (28, 10), (40, 1), (40, 2), (40, 4)):
    register_variant(f"wrn_{_depth}_{_widen}", WideResNet, depth=_depth, widen=_widen)
