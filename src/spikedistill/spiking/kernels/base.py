r"""The interface of a neuron backend, and its reference implementation (``torch``).

A backend computes the scans of the multi-step LIF (``reference``'s recurrences):

- the plain neuron: ``forward(x [T, ...], cfg, keep_membrane) -> (spikes, membrane or None)``
  and ``backward(dL/ds, membrane, cfg) -> dL/dx``;
- the neuron of a BatchNorm + LIF unit (``norm_lif``), driven by ``y = x scale + shift [+ r]``
  (a ``NormDrive``): ``norm_forward -> (spikes, bool spikes)``, ``norm_backward -> dL/dy``
  (the membrane recomputed along the forward's spikes), the unit's whole backward
  ``norm_input_backward -> (dL/dx, dL/dw, dL/db, dL/dr)``, its BatchNorm's ``batch_stats``, and
  Rate-BP's spike pass ``norm_record -> (packed spikes, spike counts, eligibility)``.

``LIFBackend`` is the pure-PyTorch reference: a few full-size ops per step. A faster backend
subclasses it and overrides what it does faster; everything else (other dtypes, kernels it has
not written) falls back to the reference. Backends change speed, not results: spikes are
identical and gradients equal up to float rounding (tests check each against this class).
"""

from __future__ import annotations

import torch

from ..config import NeuronConfig
from .record import norm_spike_statistics
from .reference import (
    composite_input_backward,
    lif_backward,
    lif_forward,
    norm_lif_backward,
    norm_lif_forward,
    with_bits,
)
from .unit import BatchStats, NormDrive, UnitGrads


class LIFBackend:
    """The reference backend (``torch``); subclasses override kernels they run faster."""

    def unavailable(self, device: torch.device) -> str | None:
        """Why the backend cannot run on ``device``; ``None`` when it can."""
        return None

    def prepare(self) -> None:
        """Build what the first call would (may raise ``ConfigError``)."""

    def forward(
        self, x: torch.Tensor, cfg: NeuronConfig, keep_membrane: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return lif_forward(x, cfg, keep_membrane)

    def backward(
        self, grad_spikes: torch.Tensor, membrane: torch.Tensor, cfg: NeuronConfig
    ) -> torch.Tensor:
        return lif_backward(grad_spikes, membrane, cfg)

    def norm_forward(
        self, drive: NormDrive, cfg: NeuronConfig
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Spikes ``[T*rows, C, ...]`` in the dtype of ``x``, and the same as ``bool``."""
        return with_bits(norm_lif_forward(drive, cfg), drive)

    def norm_backward(
        self, grad_spikes: torch.Tensor, spikes: torch.Tensor, drive: NormDrive, cfg: NeuronConfig
    ) -> torch.Tensor:
        """``dL/dy`` along the forward's ``spikes`` (bool or 0/1 bytes), summed over T if
        static."""
        return norm_lif_backward(grad_spikes, spikes, drive, cfg)

    def norm_record(
        self, drive: NormDrive, cfg: NeuronConfig
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rate-BP's spike pass of the unit: packed spikes ``uint8 [ceil(T/8), rows, C, ...]``,
        spike counts and eligibility ``[rows, C, ...]``; ``x`` is normalised in place."""
        return norm_spike_statistics(drive, cfg)

    def batch_stats(
        self,
        x: torch.Tensor,
        running_mean: torch.Tensor | None,
        running_var: torch.Tensor | None,
        momentum: float,
        eps: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, invstd)`` per channel of ``x [rows, C, ...]`` (biased variance), the running
        statistics (when given) updated in place with ``momentum`` as ATen does."""
        if running_mean is None:
            var, mean = torch.var_mean(x, [0, *range(2, x.dim())], correction=0)
        else:
            mean, var = torch.batch_norm_update_stats(x, running_mean, running_var, momentum)
        return mean, torch.rsqrt(var + eps)

    def norm_input_backward(
        self,
        grad_spikes: torch.Tensor,
        spikes: torch.Tensor,
        drive: NormDrive,
        stats: BatchStats,
        cfg: NeuronConfig,
        needs: tuple[bool, bool, bool, bool],
    ) -> UnitGrads:
        """The unit's backward ``(dL/dx, dL/dw, dL/db, dL/dr)``, each ``None`` where ``needs``
        (for x, w, b, r) is false: ``norm_backward``, then ATen's BatchNorm backward."""
        args = (grad_spikes, spikes, drive, stats, cfg, needs)
        return composite_input_backward(self.norm_backward, *args)
