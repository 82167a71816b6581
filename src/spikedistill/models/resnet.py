"""ResNets with post-activation basic blocks: CIFAR (RepDistiller), tdBN ResNet-19/18, ImageNet.

Stage ``i`` has ``depths[i]`` blocks of width ``widths[i]``; stage 1 keeps the resolution,
the others halve it.

CKDSNN's student (``SinoLeu/CKDSNN``, ``snn_models/resnet_models.py``: ``resnet19``) is
``resnet19`` with ``shortcut="avgpool_conv", last_block_act="relu", head_act="none"``: its last
block ends with a ReLU (a real-valued final map, also in the SNN) and its head is fc 512-256 ->
fc 256-K with no neuron between the two linear layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from .base import ZooModel
from .blocks import (
    BLOCK_ACTS,
    HEAD_ACTS,
    BasicBlock,
    BlockAct,
    HeadAct,
    classifier_head,
    conv3x3,
    pick_act,
)
from .inits import apply_init
from .registry import register_variant


class ResNet(ZooModel):
    def __init__(
        self,
        widths: Sequence[int],
        depths: Sequence[int],
        num_classes: int = 10,
        stem_channels: int = 64,
        imagenet_stem: bool = False,
        head_hidden: int | None = None,
        shortcut: str = "conv",
        in_channels: int = 3,
        head_act: HeadAct = "neuron",
        last_block_act: BlockAct = "neuron",
        init: str = "default",
        **zoo: Any,
    ) -> None:
        """``head_act``: the activation between the head's linear layers (``head_hidden``):
        ``neuron`` = the model's (LIF / ReLU), ``none`` = a purely linear head.
        ``last_block_act``: the activation that ends the last block (after its residual sum):
        ``neuron`` = the model's, ``relu`` = a ReLU in the SNN too (a real-valued final map).
        ``init``: a weight initialisation of ``models.inits.INITS``."""
        super().__init__(**zoo)
        if imagenet_stem:  # 7x7/2 conv; the 3x3/2 max-pool opens layer1 (after the activation)
            conv = nn.Conv2d(in_channels, stem_channels, 7, stride=2, padding=3, bias=False)
        else:
            conv = conv3x3(in_channels, stem_channels)
        self.stem = nn.Sequential(conv, nn.BatchNorm2d(stem_channels))
        self.stem_act = self.act()
        cin = stem_channels
        for i, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            blocks: list[nn.Module] = [nn.MaxPool2d(3, 2, 1)] if imagenet_stem and i == 0 else []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                last = i + 1 == len(widths) and j + 1 == depth
                out_act = pick_act(self.act, last_block_act, BLOCK_ACTS) if last else None
                blocks.append(BasicBlock(cin, width, stride, self.act, shortcut, out_act))
                cin = width
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.stage_names.append(f"layer{i + 1}")
        head_act_factory = pick_act(self.act, head_act, HEAD_ACTS)
        self.head = classifier_head(cin, num_classes, head_act_factory, hidden=head_hidden)
        apply_init(self, init)


def _cifar(depth: int, filters: Sequence[int]) -> dict[str, Any]:
    """RepDistiller's CIFAR ResNet: ``(depth - 2) / 6`` blocks per stage, 3 stages."""
    n = (depth - 2) // 6
    return dict(stem_channels=filters[0], widths=filters[1:], depths=[n] * 3)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    register_variant(f"resnet{_depth}", ResNet, **_cifar(_depth, [16, 16, 32, 64]))
register_variant("resnet8x4", ResNet, **_cifar(8, [32, 64, 128, 256]))
register_variant("resnet32x4", ResNet, **_cifar(32, [32, 64, 128, 256]))

# tdBN-style ResNet-19 (Rate-BP / CKDSNN): 128-stem, [3, 3, 2] x 128/256/512, fc 512-256-K.
register_variant(
    "resnet19", ResNet, stem_channels=128, widths=[128, 256, 512], depths=[3, 3, 2], head_hidden=256
)
# CIFAR ResNet-18 of the SNN papers: 64-stem, 4 x 2 blocks at 64/128/256/512.
register_variant("resnet18", ResNet, stem_channels=64, widths=[64, 128, 256, 512], depths=[2] * 4)
register_variant(
    "resnet18_imagenet", ResNet, imagenet_stem=True, widths=[64, 128, 256, 512], depths=[2] * 4
)
register_variant(
    "resnet34_imagenet", ResNet, imagenet_stem=True, widths=[64, 128, 256, 512], depths=[3, 4, 6, 3]
)
