"""Small networks for MNIST-size inputs and CPU work (the narrow ResNet is ``resnet8``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..spiking.layers import AdaptiveAvgPool2d
from .base import ZooModel
from .blocks import FusedSequential, classifier_head, conv3x3, conv_bn
from .registry import register_variant


class ConvNet3(ZooModel):
    """Three conv layers, ``width``, ``2 width``, ``4 width`` channels: ``conv-bn-act``, then
    two ``maxpool-conv-bn-act`` stages (28 -> 14 -> 7 on MNIST), then an adaptive average pool
    to ``head_pool x head_pool`` (1: global pooling; 7 on MNIST: plain flatten) and fc.
    ``batch_norm=False`` drops the BatchNorms (convolutions get a bias): a net whose gradient
    does not depend on how a batch is split, e.g. to check DDP against one process on CPUs,
    where PyTorch has no SyncBatchNorm."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        width: int = 16,
        head_pool: int = 1,
        batch_norm: bool = True,
        **zoo: Any,
    ) -> None:
        super().__init__(**zoo)

        def conv(cin: int, cout: int) -> nn.Sequential:
            if batch_norm:
                return conv_bn(cin, cout)
            return nn.Sequential(conv3x3(cin, cout, bias=True))

        self.stem = conv(in_channels, width)
        self.stem_act = self.act()
        self.layer1 = FusedSequential(nn.MaxPool2d(2), *conv(width, 2 * width), self.act())
        self.layer2 = FusedSequential(nn.MaxPool2d(2), *conv(2 * width, 4 * width), self.act())
        self.stage_names = ["layer1", "layer2"]
        features = 4 * width * head_pool * head_pool
        pool = AdaptiveAvgPool2d(head_pool)
        self.head = classifier_head(features, num_classes, self.act, pool=pool)


register_variant("convnet3", ConvNet3)
