"""Images stored as files in class folders, decoded with Pillow on access."""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError

# what Pillow raises on a corrupt or hostile file (PNG chunks: SyntaxError; headers: struct)
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, SyntaxError, EOFError, struct.error, MemoryError,
)  # fmt: skip
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp")


def class_folders(folder: Path) -> list[str]:
    """Sorted names of the sub-folders of ``folder``."""
    return sorted(e.name for e in os.scandir(folder) if e.is_dir())


def scan_images(folder: Path, classes: Sequence[str]) -> tuple[list[str], list[int]]:
    """Paths of the image files in ``folder/<class>/`` (recursively, sorted) and their labels."""
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = []
        for dirpath, _, files in os.walk(folder / name, followlinks=True):
            found += [
                os.path.join(dirpath, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)
            ]
        found.sort()
        paths += found
        labels += [label] * len(found)
    return paths, labels


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def random_resized_crop_box(
    width: int,
    height: int,
    generator: torch.Generator | None,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """``(left, top, w, h)`` of a random crop covering a ``scale`` fraction of the area with an
    aspect ratio in ``ratio`` (10 tries, then a centre crop), as in Inception training."""
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * _uniform(scale[0], scale[1], generator)
        aspect = math.exp(_uniform(log_lo, log_hi, generator))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=generator))
            left = int(torch.randint(0, width - w + 1, (), generator=generator))
            return left, top, w, h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def _to_tensor(img) -> Tensor:
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)


class ImageFolderDataset(Dataset):
    """Image files and labels; ``load(i, generator)`` gives ``(float [3, S, S] in [0, 1], label)``.

    ``train=True``: random-resized crop to ``S = image_size`` and a random horizontal flip;
    ``train=False``: resize the shorter side to ``S * 256 / 224`` and take the centre ``S x S``.
    ``dataset[i]`` uses the global torch RNG; the loaders call ``load`` with a seeded generator.
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: Sequence[int] | Tensor,
        *,
        train: bool,
        image_size: int = 224,
        classes: Sequence[str] = (),
    ) -> None:
        self.paths = list(paths)
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        if len(self.paths) != len(self.labels):
            raise DataError(f"{len(self.paths)} image paths but {len(self.labels)} labels")
        self.train = train
        self.image_size = int(image_size)
        self.classes = list(classes)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.load(index, None)

    def load(self, index: int, generator: torch.Generator | None) -> tuple[Tensor, int]:
        from PIL import Image

        errors = (*_DECODE_ERRORS, Image.DecompressionBombError)
        path, size = self.paths[index], self.image_size
        try:
            with Image.open(path) as raw:
                img = raw.convert("RGB")
        except errors as e:
            raise DataError(f"{path}: cannot decode image: {e}") from e
        width, height = img.size
        if self.train:
            left, top, w, h = random_resized_crop_box(width, height, generator)
            box = (left, top, left + w, top + h)
            img = img.resize((size, size), Image.Resampling.BILINEAR, box=box)
            if torch.rand((), generator=generator).item() < 0.5:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        else:
            short = size * 256 // 224
            scale = short / min(width, height)
            new_w = short if width <= height else int(width * scale)
            new_h = short if height < width else int(height * scale)
            img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
            left, top = round((new_w - size) / 2), round((new_h - size) / 2)
            img = img.crop((left, top, left + size, top + size))
        return _to_tensor(img), int(self.labels[index])

    def subset(self, indices: Sequence[int] | Tensor) -> ImageFolderDataset:
        idx = torch.as_tensor(indices, dtype=torch.int64).tolist()
        return ImageFolderDataset(
            [self.paths[i] for i in idx],
            self.labels[idx],
            train=self.train,
            image_size=self.image_size,
            classes=self.classes,
        )

    def with_labels(self, labels: Tensor) -> ImageFolderDataset:
        return ImageFolderDataset(
            self.paths, labels, train=self.train, image_size=self.image_size, classes=self.classes
        )

    def __repr__(self) -> str:
        mode = "train" if self.train else "eval"
        return f"ImageFolderDataset(n={len(self)}, classes={len(self.classes)}, {mode})"
