"""Batched augmentations on float images ``[B, C, H, W]`` in [0, 1] (``flip`` and ``roll`` also
on event frames ``[B, T, C, H, W]``).

Every random choice is drawn from the ``torch.Generator`` passed in, so a batch is reproducible
from its generator's seed alone (the loader seeds one per (seed, epoch, rank, batch)).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..errors import ConfigError
from .autoaugment import autoaugment_cifar10
from .info import DatasetInfo

BatchTransform = Callable[[Tensor, torch.Generator], Tensor]
# also the order they are applied in
TRANSFORM_NAMES = ("crop", "flip", "roll", "autoaugment", "cutout", "erase")

__all__ = [
    "TRANSFORM_NAMES",
    "BatchTransform",
    "ComposedTransform",
    "autoaugment_cifar10",
    "build_batch_transform",
    "cutout",
    "normalize",
    "random_crop",
    "random_erasing",
    "random_hflip",
    "random_roll",
]


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def random_crop(
    x: Tensor, size: int | Sequence[int], padding: int, generator: torch.Generator
) -> Tensor:
    """Zero-pad ``x [B, C, H, W]`` by ``padding`` on every side, then cut a random ``size``
    window per sample (offsets uniform over all valid positions). Returns ``[B, C, h, w]``."""
    b, c, height, width = x.shape
    h, w = _pair(size)
    if padding:
        x = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    ph, pw = height + 2 * padding, width + 2 * padding
    if h > ph or w > pw:
        raise ConfigError(f"crop size {(h, w)} exceeds the padded image size {(ph, pw)}")
    top = torch.randint(0, ph - h + 1, (b,), generator=generator)
    left = torch.randint(0, pw - w + 1, (b,), generator=generator)
    rows = (top[:, None] + torch.arange(h))[:, None, :, None]  # [B, 1, h, 1]
    cols = (left[:, None] + torch.arange(w))[:, None, None, :]  # [B, 1, 1, w]
    batch = torch.arange(b)[:, None, None, None]
    chan = torch.arange(c)[None, :, None, None]
    return x[batch, chan, rows, cols]


def random_hflip(x: Tensor, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Mirror left-right the samples for which ``torch.rand(B, generator=generator) < p``."""
    flip = torch.rand(x.shape[0], generator=generator) < p
    return torch.where(flip.view(-1, *[1] * (x.dim() - 1)), x.flip(-1), x)


def random_roll(x: Tensor, shift: int, generator: torch.Generator) -> Tensor:
    """Roll each sample by its own ``(dy, dx)``, uniform in ``[-shift, shift]``, along the last
    two dims (wrapping around): the DVS augmentation of the Rate-BP recipe."""
    offsets = torch.randint(-shift, shift + 1, (x.shape[0], 2), generator=generator).tolist()
    return torch.stack([xi.roll(tuple(o), dims=(-2, -1)) for xi, o in zip(x, offsets, strict=True)])


def cutout(
    x: Tensor,
    length: int,
    generator: torch.Generator,
    holes: int = 1,
    fill: float | Sequence[float] = 0.0,
) -> Tensor:
    """Cutout (DeVries & Taylor, 2017): per sample, ``holes`` squares of side ``length`` with
    uniformly drawn centres (clipped at the border) are set to ``fill`` (a value or one per
    channel; use the dataset mean so that the holes are 0 after normalisation)."""
    b, c, h, w = x.shape
    cy = torch.randint(0, h, (b, holes, 1), generator=generator)
    cx = torch.randint(0, w, (b, holes, 1), generator=generator)
    half = length // 2
    ys, xs = torch.arange(h), torch.arange(w)
    in_rows = (ys >= cy - half) & (ys < cy + length - half)  # [B, holes, H]
    in_cols = (xs >= cx - half) & (xs < cx + length - half)  # [B, holes, W]
    mask = (in_rows[:, :, :, None] & in_cols[:, :, None, :]).any(1)  # [B, H, W]
    value = torch.as_tensor(fill, dtype=x.dtype).reshape(-1, 1, 1)
    if value.numel() not in (1, c):
        raise ConfigError(f"cutout fill needs 1 or {c} values, got {value.numel()}")
    return torch.where(mask[:, None], value.expand(c, h, w), x)


def random_erasing(
    x: Tensor,
    generator: torch.Generator,
    p: float = 0.5,
    scale: tuple[float, float] = (0.02, 0.2),
    ratio: tuple[float, float] = (0.3, 3.3),
    fill: float | Sequence[float] = 0.0,
) -> Tensor:
    """Random erasing (Zhong et al., 2020), as torchvision's ``RandomErasing``: with probability
    ``p`` a sample gets one rectangle set to ``fill``, of area ``U(scale)`` of the image and
    aspect ratio ``exp(U(log ratio))`` (height / width), at a uniform position; a rectangle that
    does not fit is drawn again, up to 10 times, then the sample is left as it is."""
    b, c, h, w = x.shape
    value = torch.as_tensor(fill, dtype=x.dtype).reshape(-1, 1, 1)
    if value.numel() not in (1, c):
        raise ConfigError(f"erase fill needs 1 or {c} values, got {value.numel()}")
    out = x.clone()
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for i in range(b):
        if torch.rand((), generator=generator) >= p:
            continue
        for _ in range(10):
            area = h * w * float(torch.empty(()).uniform_(*scale, generator=generator))
            aspect = math.exp(float(torch.empty(()).uniform_(*log_ratio, generator=generator)))
            eh, ew = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < eh < h and 0 < ew < w:
                top = int(torch.randint(0, h - eh + 1, (), generator=generator))
                left = int(torch.randint(0, w - ew + 1, (), generator=generator))
                out[i, :, top : top + eh, left : left + ew] = value
                break
    return out


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``(x - mean[c]) / std[c]`` per channel of ``x [B, C, H, W]``; returns a new tensor."""
    m = torch.as_tensor(mean, dtype=x.dtype).reshape(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype).reshape(1, -1, 1, 1)
    if m.shape[1] != x.shape[1] or s.shape[1] != x.shape[1]:
        raise ConfigError(
            f"normalize: {m.shape[1]} means / {s.shape[1]} stds for {x.shape[1]} channels"
        )
    return (x - m) / s


class ComposedTransform:
    """Named batch transforms applied in sequence, all drawing from one generator."""

    def __init__(self, names: Sequence[str], steps: Sequence[BatchTransform]) -> None:
        self.names = tuple(names)
        self.steps = tuple(steps)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        for step in self.steps:
            x = step(x, generator)
        return x

    def __repr__(self) -> str:
        return f"ComposedTransform({list(self.names)})"


def build_batch_transform(names: Sequence[str] | str, info: DatasetInfo) -> ComposedTransform:
    """A batch transform from names in ``TRANSFORM_NAMES`` (a list or a comma-separated string).

    ``crop``: random crop to ``info.image_size`` after zero padding of 4 pixels (scaled down for
    images smaller than 32 px); ``flip``: horizontal flip with probability 1/2; ``roll``: a
    random roll of up to 5 px in x and y (for 48 px, scaled with the size); ``autoaugment``:
    the CIFAR-10 AutoAugment policy; ``cutout``: one hole of 16 px for 32 px images (scaled with
    the image size), filled with the dataset mean; ``erase``: random erasing (probability 1/2,
    2-20 % of the area, aspect 0.3-3.3), filled with the dataset mean (0 after normalisation, as
    torchvision's on a normalised tensor). They are applied in the order of ``TRANSFORM_NAMES``
    whatever the order given (crop, flip, roll, autoaugment, cutout, erase).
    """
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in TRANSFORM_NAMES]
    if unknown:
        raise ConfigError(
            f"unknown transform(s) {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(TRANSFORM_NAMES)}"
        )
    size = min(info.image_size)
    padding = 4 if size >= 32 else max(1, round(4 * size / 32))
    length = max(1, round(16 * size / 32))
    roll = max(1, round(5 * size / 48))
    fill = tuple(info.mean)
    makers: dict[str, BatchTransform] = {
        "crop": lambda x, g: random_crop(x, info.image_size, padding, g),
        "flip": random_hflip,
        "roll": lambda x, g: random_roll(x, roll, g),
        "autoaugment": autoaugment_cifar10,
        "cutout": lambda x, g: cutout(x, length, g, fill=fill),
        "erase": lambda x, g: random_erasing(x, g, fill=fill),
    }
    chosen = [n for n in TRANSFORM_NAMES if n in names]
    return ComposedTransform(chosen, [makers[n] for n in chosen])
