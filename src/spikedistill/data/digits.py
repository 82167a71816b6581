"""scikit-learn's bundled 8x8 digits (1797 images, offline) with a fixed stratified split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .info import DatasetInfo
from .registry import DATASETS
from .tensor_dataset import ImageTensorDataset


def digits_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fixed stratified 80/20 split: within each class (in file order) every 5th sample is a
    test sample. No randomness, so every run and every seed has the same test set."""
    rank = np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(len(members))
    is_test = rank % 5 == 4
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


@DATASETS.register("digits")
def build_digits(
    root: Path, *, download: bool = False, seed: int = 0
) -> tuple[ImageTensorDataset, ImageTensorDataset, DatasetInfo]:
    """Digits as ``uint8 [N, 1, 8, 8]`` (values 0..16 scaled to 0..255); a 1442/355 split.

    ``root``, ``download`` and ``seed`` are unused (the data ships with scikit-learn).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    scaled = np.rint(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    images = torch.from_numpy(scaled).unsqueeze(1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    train_idx, test_idx = (torch.from_numpy(i) for i in digits_split(digits.target))
    train = ImageTensorDataset(images[train_idx], labels[train_idx])
    test = ImageTensorDataset(images[test_idx], labels[test_idx])
    pixels = train.images.to(torch.float64) / 255.0
    info = DatasetInfo(10, 1, (8, 8), (pixels.mean().item(),), (pixels.std().item(),))
    return train, test, info
