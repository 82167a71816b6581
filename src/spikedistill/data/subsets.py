"""Class-balanced training subsets and symmetric label noise, both deterministic from a seed."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError
from .seeding import make_generator


def balanced_quotas(counts: Tensor, total: int, generator: torch.Generator) -> Tensor:
    """Per-class sample counts summing to ``total``, as equal as the class sizes ``counts``
    allow: every class gets ``min(count, q)`` for the largest feasible level ``q``; the few
    samples left over go one each to randomly chosen classes that still have samples."""
    if total > int(counts.sum()):
        raise ConfigError(f"cannot take {total} samples from {int(counts.sum())}")
    lo, hi = 0, int(counts.max())
    while lo < hi:  # largest q with sum(min(counts, q)) <= total
        mid = (lo + hi + 1) // 2
        if int(counts.clamp(max=mid).sum()) <= total:
            lo = mid
        else:
            hi = mid - 1
    quotas = counts.clamp(max=lo)
    left = total - int(quotas.sum())
    if left:
        open_classes = torch.nonzero(counts > quotas).flatten()
        chosen = open_classes[torch.randperm(len(open_classes), generator=generator)[:left]]
        quotas[chosen] += 1
    return quotas


def class_balanced_indices(labels: Tensor, num_classes: int, size: int, seed: int) -> Tensor:
    """Sorted indices of a random subset of ``size`` samples with (as near as the data allows)
    the same number per class; the same ``(labels, size, seed)`` always gives the same subset."""
    n = len(labels)
    if not num_classes <= size <= n:
        raise ConfigError(
            f"train_subset must be between the number of classes ({num_classes}) and the "
            f"training set size ({n}), got {size}"
        )
    generator = make_generator(seed, "train_subset")
    counts = torch.bincount(labels, minlength=num_classes)
    quotas = balanced_quotas(counts, size, generator)
    order = torch.randperm(n, generator=generator)
    grouped = order[torch.argsort(labels[order], stable=True)]  # by class, random within class
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n) - starts[labels[grouped]]  # position of each sample within its class
    return grouped[rank < quotas[labels[grouped]]].sort().values


def noisy_labels(labels: Tensor, num_classes: int, rate: float, seed: int) -> Tensor:
    """Symmetric label noise: each label is, with probability ``rate``, replaced by a class drawn
    uniformly from the *other* ``num_classes - 1`` classes. Returns a new int64 tensor."""
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"label_noise must be in [0, 1), got {rate}")
    if rate == 0.0:
        return labels.clone()
    if num_classes < 2:
        raise ConfigError("label_noise needs at least 2 classes")
    generator = make_generator(seed, "label_noise")
    flip = torch.rand(len(labels), generator=generator) < rate
    shift = torch.randint(1, num_classes, (len(labels),), generator=generator)
    return torch.where(flip, (labels + shift) % num_classes, labels)
