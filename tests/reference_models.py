"""The reference papers' student networks, re-created for ``test_reference_models``: the layer
structure (order, widths, strides, biases, classifier) of

- SASTC ``wrn_16_2_snn``: github.com/ieveresthd/SASTC ``CIFAR10/models/snn/wrnkd.py``
  (commit 8fdea41), a torchvision-style bottleneck ResNet ``[2, 1, 1]``, width_per_group 128;
- SASTC ``VGG11SNN``: the same repository, ``CIFAR10/models/snn/vggkd.py``;
- CKDSNN ``resnet19`` (``width_mult=8``): github.com/SinoLeu/CKDSNN
  ``snn_models/resnet_models.py`` (commit 124c9a7 on, with its fc 512-256 -> fc 256-K head).

Written as ANNs: ``spike`` stands where the reference has a LIF (a ReLU here, so that the ANN
build of a zoo model with the same weights gives the same logits); where the reference has a
ReLU in its SNN (CKDSNN's last block) that is a ReLU too. The reference's time dimension, LIF
and weight init are left out: none of them has parameters.
"""

from __future__ import annotations

import torch
from torch import nn


def spike() -> nn.Module:
    return nn.ReLU()


def conv_bn_spike(cin: int, cout: int, stride: int, bias: bool = False) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=bias), nn.BatchNorm2d(cout), spike()
    )


class SastcBottleneck(nn.Module):
    """1x1 conv-BN-LIF, 3x3 conv (strided)-BN-LIF, 1x1 conv-BN, + downsample, LIF."""

    def __init__(self, cin: int, planes: int, width_per_group: int, stride: int) -> None:
        super().__init__()
        width, cout = planes * width_per_group // 64, planes * 4
        self.reduce = nn.Sequential(nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width))
        self.spatial = nn.Sequential(
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        )
        self.expand = nn.Sequential(nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )
        self.spike = spike()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.spike(self.spatial(self.spike(self.reduce(x))))
        identity = x if self.downsample is None else self.downsample(x)
        return self.spike(self.expand(out) + identity)


class SastcWrn16x2(nn.Module):
    """``wrn_16_2_snn``: stem 3x3 conv 3-64 (no bias) + BN + LIF; bottleneck stages of planes
    128 / 256 / 512 with [2, 1, 1] blocks (stride 2 from stage 2); avgpool; fc1 2048-256, LIF,
    fc2 256-K."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), spike()
        )
        blocks, cin = [], 64
        for i, (planes, depth) in enumerate(zip((128, 256, 512), (2, 1, 1), strict=True)):
            for j in range(depth):
                blocks.append(SastcBottleneck(cin, planes, 128, 2 if i and not j else 1))
                cin = planes * 4
        self.blocks = nn.Sequential(*blocks)
        self.fc1, self.spike, self.fc2 = nn.Linear(cin, 256), spike(), nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x)).mean((2, 3))
        return self.fc2(self.spike(self.fc1(x)))


class SastcVgg11(nn.Module):
    """``VGG11SNN``: eight conv3x3 (bias) + BN + LIF layers 64, 128/2, 256, 256/2, 512, 512/2,
    512, 512/2 (``/2``: stride 2, no pooling), then Linear 2048-4096, 4096-4096, 4096-K with no
    neuron between them. No dropout."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        plan = [(64, 1), (128, 2), (256, 1), (256, 2), (512, 1), (512, 2), (512, 1), (512, 2)]
        layers, cin = [], 3
        for cout, stride in plan:
            layers.append(conv_bn_spike(cin, cout, stride, bias=True))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(512 * 2 * 2, 4096),
            nn.Linear(4096, 4096),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class CkdsnnBlock(nn.Module):
    """``PreActBasicBlock`` (post-activation in fact): conv-BN-LIF, conv-BN, + shortcut
    (AvgPool(stride) + 1x1 conv + BN on a shape change), then LIF, or ReLU in the last block."""

    def __init__(self, cin: int, cout: int, stride: int, last: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_spike(cin, cout, stride),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(stride), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)
            )
        self.out = nn.ReLU() if last else spike()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.out(self.body(x) + identity)


class CkdsnnResNet19(nn.Module):
    """``resnet19(width_mult=8)``: stem conv 3-128 + BN + LIF; [3, 3, 2] blocks of 128 / 256 /
    512; the last block ends with ReLU; avgpool, mean over T, fc 512-256, fc 256-K (linear)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn_spike(3, 128, 1)
        blocks, cin = [], 128
        for i, (width, depth) in enumerate(zip((128, 256, 512), (3, 3, 2), strict=True)):
            for j in range(depth):
                last = i == 2 and j == depth - 1
                blocks.append(CkdsnnBlock(cin, width, 2 if i and not j else 1, last))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.fc_hidden, self.fc_out = nn.Linear(512, 256), nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(self.fc_hidden(self.blocks(self.stem(x)).mean((2, 3))))


REFERENCES = {
    "wrn_16_2_sastc": (SastcWrn16x2, {}),
    "vgg11_sastc": (SastcVgg11, {}),
    "resnet19": (
        CkdsnnResNet19,
        {"shortcut": "avgpool_conv", "last_block_act": "relu", "head_act": "none"},
    ),
}
