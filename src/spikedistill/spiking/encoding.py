"""Input encoding (static images and event frames) and the time-averaged readout."""

from __future__ import annotations

import torch


def direct_encode(x: torch.Tensor, T: int) -> torch.Tensor:
    """Direct encoding: the same input at every step, ``[B, ...] -> [T, B, ...]`` (a view)."""
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    return x.unsqueeze(0).expand(T, *x.shape)


def repeat_folded(x: torch.Tensor, T: int) -> torch.Tensor:
    """Direct encoding straight into the folded layout: ``[B, ...] -> [T*B, ...]``."""
    return x.repeat(T, *([1] * (x.dim() - 1)))


def time_first(x: torch.Tensor, batch_first: bool = False) -> torch.Tensor:
    """Event frames as ``[T, B, ...]``; ``batch_first`` input ``[B, T, ...]`` is transposed."""
    return x.transpose(0, 1).contiguous() if batch_first else x


def mean_readout(logits: torch.Tensor) -> torch.Tensor:
    """Prediction of an SNN: mean over time of the per-step logits, ``[T, B, K] -> [B, K]``."""
    return logits.mean(0)
