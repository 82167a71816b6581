"""A learnable random dataset for tests and smoke runs: each class has its own mean image."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..errors import ConfigError
from .info import DatasetInfo
from .registry import DATASETS
from .seeding import make_generator
from .tensor_dataset import ImageTensorDataset


def _positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"synthetic: {name} must be an integer >= {minimum}, got {value!r}")
    return value


def synthetic_split(
    prototypes: Tensor, n: int, generator: torch.Generator, noise: float = 40.0
) -> ImageTensorDataset:
    """``n`` balanced samples: the class prototype (0..255 floats) plus Gaussian pixel noise."""
    num_classes = len(prototypes)
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=generator)]
    pixels = prototypes[labels] + noise * torch.randn(
        (n, *prototypes.shape[1:]), generator=generator
    )
    return ImageTensorDataset(pixels.round().clamp(0, 255).to(torch.uint8), labels)


@DATASETS.register("synthetic")
def build_synthetic(
    root: Path,
    *,
    download: bool = False,
    seed: int = 0,
    shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    n_train: int = 512,
    n_test: int = 256,
) -> tuple[ImageTensorDataset, ImageTensorDataset, DatasetInfo]:
    """Random ``uint8 [N, *shape]`` images, deterministic from ``seed``: class ``k``'s images
    are a smooth random prototype (a 4x4 pattern upsampled) plus pixel noise, so a model can
    learn the classes. Labels cycle through the classes (balanced when ``n`` is a multiple of
    ``num_classes``; smaller sets, e.g. one-step smoke tests, see the first ``n`` classes);
    ``root`` and ``download`` are unused. A 4-entry ``shape`` ``(T, channels, height, width)``
    gives event-frame-like samples, batched time-first as event datasets are."""
    if isinstance(shape, (str, bytes)) or len(shape) not in (3, 4):
        raise ConfigError(
            f"synthetic: shape must be (channels, height, width) or (T, channels, height, "
            f"width), got {shape!r}"
        )
    *frames, c, h, w = (_positive_int("shape", s) for s in shape)
    k = _positive_int("num_classes", num_classes, 2)
    n_tr = _positive_int("n_train", n_train, 1)
    n_te = _positive_int("n_test", n_test, 1)
    generator = make_generator(seed, "synthetic")
    coarse = torch.rand((k * (frames[0] if frames else 1), c, 4, 4), generator=generator)
    smooth = torch.nn.functional.interpolate(
        coarse, size=(h, w), mode="bilinear", align_corners=False
    ).view(k, *frames, c, h, w)
    prototypes = 48.0 + 160.0 * smooth  # class means in [48, 208]
    train = synthetic_split(prototypes, n_tr, generator)
    test = synthetic_split(prototypes, n_te, generator)
    pixels = train.images.to(torch.float64).div(255.0).movedim(-3, 0).reshape(c, -1)
    mean = tuple(pixels.mean(dim=1).tolist())
    std = tuple(pixels.std(dim=1).clamp(min=1e-3).tolist())
    time_steps = frames[0] if frames else None
    return train, test, DatasetInfo(k, c, (h, w), mean, std, time_steps=time_steps)
