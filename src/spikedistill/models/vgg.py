"""VGG with BatchNorm (RepDistiller's CIFAR VGG), VGGSNN (the CIFAR10-DVS network) and
SASTC's VGG-11 student.

Stage ``k`` is conv group ``k`` (conv3x3 + BN + act each) followed by its pooling layer; the
first convolution of group 1 is the stem. With ``downsample="stride"`` the last convolution of
a group has stride 2 instead of a pooling layer after it.

``vgg11_sastc`` is the SASTC reference student (``ieveresthd/SASTC``,
``CIFAR10/models/snn/vggkd.py``: ``VGG11SNN``): convolutions 64, 128/2, 256, 256/2, 512, 512/2,
512, 512/2 (``/2``: stride 2), then the flattened 2x2 map through three linear layers
2048-4096-4096-K with no activation between them. Its stages end where the reference's feature
taps are (its layers 2, 4, 6 and 8).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from torch import nn

from ..errors import ConfigError
from .base import ZooModel
from .blocks import HEAD_ACTS, FusedSequential, HeadAct, classifier_head, conv_bn, pick_act
from .inits import apply_init
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
        downsample: Literal["pool", "stride"] = "pool",
        head_hidden: int | Sequence[int] | None = None,
        head_act: HeadAct = "neuron",
        init: str = "default",
        **zoo: Any,
    ) -> None:
        """``pool_last``: also downsample after the last group. ``flatten_size``: classify the
        flattened final map of this input size instead of global-average-pooling it.
        ``downsample``: ``pool`` (a ``pool`` layer after a group) or ``stride`` (the group's
        last convolution has stride 2). ``head_hidden``: widths of hidden linear layers before
        ``fc``; ``head_act``: between them the model's activation (``neuron``) or ``none``.
        ``init``: a weight initialisation of ``models.inits.INITS``."""
        super().__init__(**zoo)
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r} (valid: {', '.join(POOLS)})")
        if downsample not in ("pool", "stride"):
            raise ConfigError(f"unknown downsample {downsample!r} (valid: pool, stride)")
        if downsample == "stride" and len(groups[0]) < 2:
            raise ConfigError("downsample='stride' needs two convolutions in the first group")
        cin = groups[0][0]
        self.stem = conv_bn(in_channels, cin, bias=True)
        self.stem_act = self.act()
        n_down = 0
        for k, widths in enumerate(groups):
            down = k + 1 < len(groups) or pool_last
            layers, cin = self._group(cin, widths[1:] if k == 0 else widths, down, downsample)
            if down and downsample == "pool":
                layers.append(POOLS[pool](2, 2))
            n_down += int(down)
            setattr(self, f"layer{k + 1}", FusedSequential(*layers))
            self.stage_names.append(f"layer{k + 1}")
        if flatten_size:
            side = flatten_size // 2**n_down
            head_pool, cin = nn.Identity(), cin * side * side
        else:
            head_pool = None
        act = pick_act(self.act, head_act, HEAD_ACTS)
        self.head = classifier_head(cin, num_classes, act, hidden=head_hidden, pool=head_pool)
        apply_init(self, init)

    def _group(
        self, cin: int, widths: Sequence[int], down: bool, downsample: str
    ) -> tuple[list[nn.Module], int]:
        """The conv + BN + act layers of a group (the last one strided when it downsamples
        by stride) and its output width."""
        layers: list[nn.Module] = []
        for i, width in enumerate(widths):
            stride = 2 if down and downsample == "stride" and i + 1 == len(widths) else 1
            layers += [*conv_bn(cin, width, stride, bias=True), self.act()]
            cin = width
        return layers, cin


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
# SASTC's VGG-11 student: stride-2 convolutions, no pooling, a linear 3-layer classifier.
register_variant(
    "vgg11_sastc",
    VGG,
    groups=[[64, 128], [256, 256], [512, 512], [512, 512]],
    pool_last=True,
    downsample="stride",
    flatten_size=32,
    head_hidden=[4096, 4096],
    head_act="none",
)
