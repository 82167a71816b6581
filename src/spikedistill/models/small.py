"""Small networks for MNIST-size inputs and CPU work (the narrow ResNet is ``resnet8``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from .base import ZooModel
from .blocks import classifier_head, conv_bn
from .registry import register_variant


class ConvNet3(ZooModel):
    """Three conv layers, ``width``, ``2 width``, ``4 width`` channels: ``conv-bn-act``, then
    two ``maxpool-conv-bn-act`` stages (28 -> 14 -> 7 on MNIST), global average pool, fc."""

    def __init__(
        self, num_classes: int = 10, in_channels: int = 1, width: int = 16, **zoo: Any
    ) -> None:
        super().__init__(**zoo)
        self.stem = conv_bn(in_channels, width)
        self.stem_act = self.act()
        self.layer1 = nn.Sequential(nn.MaxPool2d(2), *conv_bn(width, 2 * width), self.act())
        self.layer2 = nn.Sequential(nn.MaxPool2d(2), *conv_bn(2 * width, 4 * width), self.act())
        self.stage_names = ["layer1", "layer2"]
        self.head = classifier_head(4 * width, num_classes, self.act)


register_variant("convnet3", ConvNet3)
