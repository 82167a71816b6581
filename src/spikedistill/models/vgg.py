"""VGG with BatchNorm (RepDistiller's CIFAR VGG) and VGGSNN (the CIFAR10-DVS network).

Stage ``k`` is conv group ``k`` (conv3x3 + BN + act each) followed by its pooling layer; the
first convolution of group 1 is the stem.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from .base import ZooModel
from .blocks import FusedSequential, classifier_head, conv_bn
from .registry import register_variant

POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


class VGG(ZooModel):
    def __init__(
        self,
        groups: Sequence[Sequence[int]],
        num_classes: int = 10,
        in_channels: int = 3,
        pool: str = "max",
        pool_last: bool = False,
        flatten_size: int | None = None,
        **zoo: Any,
    ) -> None:
        """``pool_last``: also pool after the last group. ``flatten_size``: classify the
        flattened final map of this input size instead of global-average-pooling it."""
        super().__init__(**zoo)
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r} (valid: {', '.join(POOLS)})")
        cin = groups[0][0]
        self.stem = conv_bn(in_channels, cin, bias=True)
        self.stem_act = self.act()
        n_pools = 0
        for k, widths in enumerate(groups):
            layers: list[nn.Module] = []
            for width in widths[1:] if k == 0 else widths:
                layers += [*conv_bn(cin, width, bias=True), self.act()]
                cin = width
            if k + 1 < len(groups) or pool_last:
                layers.append(POOLS[pool](2, 2))
                n_pools += 1
            setattr(self, f"layer{k + 1}", FusedSequential(*layers))
            self.stage_names.append(f"layer{k + 1}")
        if flatten_size:
            side = flatten_size // 2**n_pools
            head_pool, cin = nn.Identity(), cin * side * side
        else:
            head_pool = None
        self.head = classifier_head(cin, num_classes, self.act, pool=head_pool)


_A = [[64], [128], [256, 256], [512, 512], [512, 512]]
_B = [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]]
_D = [[64, 64], [128, 128], [256] * 3, [512] * 3, [512] * 3]
register_variant("vgg8", VGG, groups=[[64], [128], [256], [512], [512]])
register_variant("vgg11", VGG, groups=_A)
register_variant("vgg13", VGG, groups=_B)
register_variant("vgg16", VGG, groups=_D)
register_variant(
    "vggsnn",
    VGG,
    groups=[[64, 128], [256, 256], [512, 512], [512, 512]],
    pool="avg",
    pool_last=True,
    flatten_size=48,
    in_channels=2,
)
