"""``LabelledView``: a map-style dataset whose labels are known without reading its samples
(torchvision's ``targets``), with the ``labels``, ``subset`` and ``with_labels`` that
``data.train_subset`` and ``data.label_noise`` use."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset


class LabelledView(Dataset):
    """Samples ``indices`` of ``dataset``, each with its label from ``labels``."""

    def __init__(self, dataset: Dataset, labels: Tensor, indices: Tensor | None = None) -> None:
        self.dataset, self.labels = dataset, labels
        self.indices = torch.arange(len(labels)) if indices is None else indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.load(i, None)

    def load(self, i: int, generator: torch.Generator | None) -> tuple[Any, int]:
        """Sample ``i`` (through the dataset's own ``load`` with ``generator``, if it has
        one), with the view's label."""
        index, load = int(self.indices[i]), getattr(self.dataset, "load", None)
        x, _ = self.dataset[index] if load is None or generator is None else load(index, generator)
        return x, int(self.labels[i])

    def subset(self, indices: Sequence[int] | Tensor) -> LabelledView:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return LabelledView(self.dataset, self.labels[idx], self.indices[idx])

    def with_labels(self, labels: Tensor) -> LabelledView:
        return LabelledView(self.dataset, torch.as_tensor(labels, dtype=torch.int64), self.indices)


def known_labels(dataset: Dataset) -> Tensor | None:
    """``dataset``'s labels as int64 ``[N]`` from its ``targets`` or ``labels`` (one integer
    per sample), else None."""
    for name in ("labels", "targets"):
        given = getattr(dataset, name, None)
        if given is None:
            continue
        try:
            labels = torch.as_tensor(given)
        except (TypeError, ValueError, RuntimeError):
            continue
        if labels.dim() == 1 and len(labels) == len(dataset) and not labels.is_floating_point():
            return labels.to(torch.int64)
    return None
