"""Key layouts of checkpoints saved by other code, renamed onto the zoo's module names.

A *layout* is a naming scheme of state-dict keys, recognised by marker keys
(``detect_layout``). ``RULES[(layout, family)]`` renames a layout's keys onto a zoo *family*
(``ZOO_FAMILIES``: zoo name -> family); a pair is listed only where the zoo network is the
same network as the source's: same layers, same order, same output (checked in
``tests/test_checkpoint_layouts.py`` by comparing outputs). ``UNMAPPED`` says why a pair that
looks alike is not.

Sources (module names, forward):

- ``torchvision_resnet``: torchvision's ``ResNet`` (timm's ResNet uses the same names) and
  RepDistiller / mdistiller's CIFAR ``ResNet`` (``models/resnet.py``, ported from torchvision):
  ``conv1 bn1 [maxpool] layerN.M.{conv1,bn1,conv2,bn2,downsample.0,downsample.1} fc``.
  Zoo: ``stem.0 stem.1 layerN.M.{..., shortcut.0, shortcut.1} head.fc``; the ImageNet zoo
  ResNet holds the 3x3/2 max-pool as ``layer1.0``, so its blocks are ``layer1.(M+1)``.
  RepDistiller's ``AvgPool2d(8)`` is the zoo's global average pool on its 8x8 map (32x32 input).
- ``repdistiller_wrn``: RepDistiller's ``WideResNet`` (``models/wrn.py``):
  ``conv1 blockN.layer.M.{bn1,conv1,bn2,conv2,convShortcut} bn1 fc`` ->
  ``stem layerN.M.{bn1,conv1,bn2,conv2,shortcut} head.bn head.fc``.
- ``repdistiller_vgg``: RepDistiller's VGG-BN (``models/vgg.py``): recognised, not mapped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from ..errors import CheckpointError

#: a rename rule: ``re.sub(pattern, replacement, key, count=1)``
Rule = tuple[str, str | Callable[[re.Match], str]]


@dataclass(frozen=True)
class Layout:
    source: str  # who saves keys so
    markers: tuple[str, ...]  # every one matches some key

    def matches(self, keys: Iterable[str]) -> bool:
        keys = list(keys)
        return all(any(re.search(m, k) for k in keys) for m in self.markers)


LAYOUTS: dict[str, Layout] = {
    "torchvision_resnet": Layout(
        "torchvision / timm ResNet, RepDistiller / mdistiller CIFAR ResNet",
        (r"^conv1\.weight$", r"^bn1\.running_var$", r"^layer1\.0\.conv1\.weight$", r"^fc\."),
    ),
    "repdistiller_wrn": Layout(
        "RepDistiller / mdistiller WideResNet",
        (r"^conv1\.weight$", r"^block1\.layer\.0\.conv1\.weight$", r"^bn1\.", r"^fc\."),
    ),
    "repdistiller_vgg": Layout(
        "RepDistiller / mdistiller VGG-BN",
        (r"^block0\.0\.weight$", r"^block4\.", r"^classifier\.weight$"),
    ),
}

_CIFAR_RESNETS = [f"resnet{d}" for d in (8, 14, 20, 32, 44, 56, 110)] + ["resnet8x4", "resnet32x4"]
_WRNS = [f"wrn_{d}_{k}" for d, k in ((16, 1), (16, 2), (16, 4), (28, 4), (28, 10), (40, 1))]
_WRNS += ["wrn_40_2", "wrn_40_4"]  # RepDistiller's WideResNet(depth, widen_factor), any size
#: zoo name -> the family its rename rules are written for
ZOO_FAMILIES: dict[str, str] = {
    **dict.fromkeys(_CIFAR_RESNETS, "resnet_cifar"),
    "resnet18_imagenet": "resnet_imagenet",
    "resnet34_imagenet": "resnet_imagenet",
    **dict.fromkeys(_WRNS, "wrn"),
    **dict.fromkeys(("vgg8", "vgg11", "vgg13", "vgg16"), "vgg"),
}

_RESNET_COMMON: tuple[Rule, ...] = (
    (r"^conv1\.", "stem.0."),
    (r"^bn1\.", "stem.1."),
    (r"^(layer\d+\.\d+)\.downsample\.", r"\1.shortcut."),
    (r"^fc\.", "head.fc."),
)

#: (layout, zoo family) -> rules, applied in order to every key
RULES: dict[tuple[str, str], tuple[Rule, ...]] = {
    ("torchvision_resnet", "resnet_cifar"): _RESNET_COMMON,
    ("torchvision_resnet", "resnet_imagenet"): (
        *_RESNET_COMMON,
        (r"^layer1\.(\d+)\.", lambda m: f"layer1.{int(m[1]) + 1}."),  # layer1.0 is the max-pool
    ),
    ("repdistiller_wrn", "wrn"): (
        (r"^conv1\.weight$", "stem.weight"),
        (r"^block(\d)\.layer\.(\d+)\.", r"layer\1.\2."),
        (r"\.convShortcut\.", ".shortcut."),
        (r"^bn1\.", "head.bn."),
        (r"^fc\.", "head.fc."),
    ),
}

#: (layout, zoo family) pairs that look alike but are different networks, and why
UNMAPPED: dict[tuple[str, str], str] = {
    ("repdistiller_vgg", "vgg"): (
        "RepDistiller's VGG applies pool3 only to 64-pixel-high inputs (`if h == 64`), so on "
        "32x32 CIFAR images its block4 runs at 4x4, while the zoo VGG pools after every group "
        "but the last (its layer5 runs at 2x2): the outputs differ"
    ),
}


def detect_layout(keys: Iterable[str]) -> str | None:
    """The name of the first of ``LAYOUTS`` whose markers all match ``keys``, else None."""
    keys = list(keys)
    return next((name for name, layout in LAYOUTS.items() if layout.matches(keys)), None)


def rename(state: dict[str, torch.Tensor], rules: Iterable[Rule]) -> dict[str, torch.Tensor]:
    """``state`` with every rule applied, in order, to every key (at most once per rule)."""
    rules = list(rules)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = key
        for pattern, replacement in rules:
            new = re.sub(pattern, replacement, new, count=1)
        if new in out:
            raise CheckpointError(f"key layout maps two keys onto {new!r} (from {key!r})")
        out[new] = value
    return out


def mappings(
    state: dict[str, torch.Tensor], arch: str | None, own: Iterable[str] = ()
) -> tuple[list[tuple[str, dict[str, torch.Tensor]]], str]:
    """The readings of ``state`` to try on zoo model ``arch`` (whose keys are ``own``):
    ``[(label, renamed state)]``, the zoo's own keys first, then the detected layout's rules
    for ``arch``'s family; and a note for the error message when the detected layout does not
    map onto ``arch``, unless ``own`` is in that layout too (a torchvision model: the names
    are the model's, only sizes differ; no renaming would help)."""
    readings = [("zoo keys", state)]
    layout = detect_layout(state)
    if layout is None or arch is None or layout == detect_layout(own):
        return readings, ""
    family = ZOO_FAMILIES.get(arch)
    if (layout, family) in RULES:
        readings.append((f"{layout} -> {family}", rename(state, RULES[layout, family])))
        return readings, ""
    if (layout, family) in UNMAPPED:
        why = UNMAPPED[layout, family]
        return readings, f"{LAYOUTS[layout].source} keys do not map onto {arch!r}: {why}"
    targets = sorted(a for a, f in ZOO_FAMILIES.items() if (layout, f) in RULES)
    return readings, (
        f"the keys look like {LAYOUTS[layout].source} ({layout}), which maps onto "
        f"{', '.join(targets) or 'no zoo model'}, not {arch!r}"
    )
