"""``ImageTensorDataset``: a whole image dataset held in memory as one uint8 tensor."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError


class ImageTensorDataset(Dataset):
    """Images ``uint8 [N, C, H, W]`` with labels ``int64 [N]``.

    ``dataset[i]`` is ``(float image in [0, 1] [C, H, W], int label)``; the loader does the same
    conversion for whole batches at once (see :func:`spikedistill.data.make_loader`).
    """

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() not in (4, 5):
            raise DataError(
                f"images must be uint8 [N, C, H, W] (or frames [N, T, C, H, W]), "
                f"got {images.dtype} {tuple(images.shape)}"
            )
        if labels.dtype != torch.int64 or labels.dim() != 1:
            raise DataError(f"labels must be int64 [N], got {labels.dtype} {tuple(labels.shape)}")
        if len(images) != len(labels):
            raise DataError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index].float().div_(255.0), int(self.labels[index])

    def subset(self, indices: Sequence[int] | Tensor) -> ImageTensorDataset:
        """A new dataset with the samples at ``indices`` (copied), in that order."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return ImageTensorDataset(self.images[idx], self.labels[idx])

    def with_labels(self, labels: Tensor) -> ImageTensorDataset:
        """The same images with other labels (e.g. noisy ones); images are shared, not copied."""
        return ImageTensorDataset(self.images, torch.as_tensor(labels, dtype=torch.int64))

    def __repr__(self) -> str:
        n, *shape = self.images.shape
        return f"ImageTensorDataset(n={n}, shape={tuple(shape)})"
