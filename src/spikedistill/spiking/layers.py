"""Time-distributed layers: stateless modules on the merged ``[T*B, ...]`` view.

Inside the model zoo, tensors travel time-folded as ``[T*B, ...]`` (time-major: rows
``t*B .. (t+1)*B - 1`` hold step ``t``), so convolutions, BatchNorm (normalising over ``T*B``:
the "tdBN" of the reference code), pooling and linear layers are plain modules; only neurons
unfold time. ``TimeDistributed`` is the adapter for code that holds ``[T, B, ...]`` tensors.
"""

from __future__ import annotations

import torch
from torch import nn

from .saved_spikes import mark_spikes


def fold_time(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, ...] -> [T*B, ...]`` (a view when ``x`` is contiguous)."""
    return x.flatten(0, 1)


def unfold_time(x: torch.Tensor, T: int) -> torch.Tensor:
    """``[T*B, ...] -> [T, B, ...]``."""
    if x.shape[0] % T:
        raise ValueError(f"leading size {x.shape[0]} is not a multiple of T={T}")
    return x.view(T, x.shape[0] // T, *x.shape[1:])


class TimeDistributed(nn.Module):
    """Apply a stateless ``module`` to every step of ``[T, B, ...]`` at once (merged batch)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unfold_time(self.module(fold_time(x)), x.shape[0])


class TimeBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over ``T*B*H*W`` for ``[T, B, C, H, W]`` input (statistics shared over time)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unfold_time(super().forward(fold_time(x)), x.shape[0])


def pool_is_identity(pool: nn.AdaptiveAvgPool2d, x: torch.Tensor) -> bool:
    """Whether the adaptive average pool ``pool`` leaves ``x [N, C, H, W]`` as it is (its output
    size is the input's, as a ``head_pool=7`` head on a 7x7 map)."""
    size = pool.output_size
    size = (size, size) if isinstance(size, int) else size
    return all(s is None or s == d for s, d in zip(size, x.shape[-2:], strict=True))


class AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d`` that returns its input when that is already the output size
    (PyTorch computes the identity average then, forward and backward)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if pool_is_identity(self, x) else super().forward(x)


class FoldedNeuron(nn.Module):
    """Run a multi-step neuron on a time-folded ``[T*B, ...]`` tensor; returns ``[T*B, ...]``.

    ``T`` is an attribute so that a model can change its number of steps after it is built.
    """

    def __init__(self, neuron: nn.Module, T: int) -> None:
        super().__init__()
        self.neuron = neuron
        self.T = T

    def forward(self, x: torch.Tensor, static: bool = False) -> torch.Tensor:
        """``[T*B, ...] -> [T*B, ...]``; with ``static``, ``x [B, ...]`` is the input at every
        step (direct encoding without materialising ``T`` copies)."""
        steps = x.unsqueeze(0).expand(self.T, *x.shape) if static else unfold_time(x, self.T)
        return mark_spikes(fold_time(self.neuron(steps)))

    def extra_repr(self) -> str:
        return f"T={self.T}"
