"""The inputs of a BatchNorm + LIF unit's kernels, as small frozen records."""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: ``(dL/dx, dL/dw, dL/db, dL/dr)`` of a unit; ``None`` where not needed
UnitGrads = tuple[torch.Tensor | None, ...]


@dataclass(frozen=True)
class NormDrive:
    """The input of the LIF in a BatchNorm + LIF unit, ``y = x * scale + shift [+ residual]``:
    ``x`` is the BatchNorm input ``[T*rows, C, ...]`` (``[rows, C, ...]`` when ``static``: a
    direct-encoded stem whose output drives every step), ``scale``, ``shift`` are ``[C]``,
    ``residual`` (a residual block's shortcut) is ``[T*rows, C, ...]``."""

    x: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor
    residual: torch.Tensor | None
    T: int
    static: bool

    @property
    def out_shape(self) -> tuple[int, ...]:
        """The unit's output (spikes) shape ``[T*rows, C, ...]``."""
        rows = self.x.shape[0] * self.T if self.static else self.x.shape[0]
        return (rows, *self.x.shape[1:])


@dataclass(frozen=True)
class BatchStats:
    """A train-mode BatchNorm's affine weight (or ``None``) and the batch statistics it
    normalised with: ``mean``, ``invstd = (var + eps)^-1/2``."""

    weight: torch.Tensor | None
    mean: torch.Tensor
    invstd: torch.Tensor
