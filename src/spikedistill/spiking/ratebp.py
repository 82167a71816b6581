r"""Rate-based backpropagation (Rate-BP, methods.md §4): train a spiking model through a
T-free "rate graph" instead of unrolling time.

``RateBackprop(model)(x)`` runs two passes over the same modules of a zoo SNN:

1. **spike pass** (no autograd): the normal forward over ``T`` steps; every neuron also records
   its firing rate ``r`` and eligibility ``e`` (``rate_stats``), every BatchNorm the batch
   mean and biased variance of its input (and updates its running stats once, as usual);
2. **rate pass** (autograd): the same modules once on the time-averaged input ``xbar`` (the
   image itself for direct encoding), with every neuron returning ``r + (x e - (x e).detach())``
   (value: the spike-pass rate; gradient: ``e * dL/dr``) and every BatchNorm normalising with
   the spike-pass statistics (value) while its gradient is that of a train-mode BN on the rate
   tensor (straight-through statistics); running stats are left alone.

Convolutions, linear layers, average pooling and residual sums are linear, so the rate-pass
logits equal the spike-pass mean logits (max-pooling is the exception). Memory is independent
of ``T``: two ``[B, ...]`` tensors per neuron and two vectors per BatchNorm.

Only modules inside ``model`` are switched (a BRD teacher's BatchNorms are never touched), the
switch is undone when the call returns, and nothing changes the global grad mode: inside
``torch.no_grad()`` or in eval mode the call is the plain forward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ..errors import ConfigError
from .encoding import time_first
from .layers import FoldedNeuron, fold_time, unfold_time
from .neuron import LIF
from .rate_stats import rate_and_eligibility

_BatchNorm = nn.modules.batchnorm._BatchNorm


def _bn_dims(x: torch.Tensor) -> list[int]:
    return [0, *range(2, x.dim())]


def _per_channel(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.view(1, -1, *([1] * (x.dim() - 2)))


class RateBackprop:
    """A callable training view of a zoo SNN: ``forward(x, per_step)`` as the model's, the
    rate-pass logits ``[B, K]`` (``[1, B, K]`` with ``per_step``). As seen by feature taps
    and losses it is a one-step network whose neurons output firing rates (``T == 1``)."""

    spiking = True

    def __init__(self, model: nn.Module) -> None:
        if not getattr(model, "spiking", False):
            raise ConfigError("rate-based backprop (train.backprop: rate) needs a spiking model")
        self.model = model
        self.neurons = [m for m in model.modules() if isinstance(m, FoldedNeuron)]
        bad = [type(m.neuron).__name__ for m in self.neurons if not isinstance(m.neuron, LIF)]
        if bad:
            raise ConfigError(
                f"rate-based backprop supports spikedistill LIF/IF neurons, not {bad}"
            )
        self.norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
        self.last_spike_logits: torch.Tensor | None = None  # [T, B, K] of the last spike pass

    @property
    def T(self) -> int:
        return 1

    def __call__(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        model = self.model
        if not (model.training and torch.is_grad_enabled()):
            return model(x, per_step=per_step)
        records: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
        with self._patched(records, "record"), torch.no_grad():
            self.last_spike_logits = model(x, per_step=True)
        xbar = time_first(x, model.batch_first).mean(0) if x.dim() == 5 else x
        T = model.T
        with self._patched(records, "rate"):
            model.T = 1
            try:
                logits = model(xbar, per_step=True)  # [1, B, K]
            finally:
                model.T = T
        return logits if per_step else logits[0]

    @contextlib.contextmanager
    def _patched(self, records: dict, phase: str) -> Iterator[None]:
        """Swap the forward of every neuron and BatchNorm of the model for the phase's."""
        for m in self.neurons:
            m.forward = (
                self._neuron_record(m, records)
                if phase == "record"
                else self._neuron_rate(m, records)
            )
        for m in self.norms:
            m.forward = (
                self._norm_record(m, records) if phase == "record" else self._norm_rate(m, records)
            )
        try:
            yield
        finally:
            for m in (*self.neurons, *self.norms):
                del m.forward  # back to the class's forward

    @staticmethod
    def _neuron_record(m: FoldedNeuron, records: dict):
        def forward(x: torch.Tensor) -> torch.Tensor:
            spikes, rate, elig = rate_and_eligibility(unfold_time(x, m.T), m.neuron.config)
            records[m] = (rate, elig)
            return fold_time(spikes)

        return forward

    @staticmethod
    def _neuron_rate(m: FoldedNeuron, records: dict):
        def forward(x: torch.Tensor) -> torch.Tensor:
            rate, elig = records[m]
            xe = x * elig
            return rate + (xe - xe.detach())

        return forward

    @staticmethod
    def _norm_record(m: _BatchNorm, records: dict):
        cls_forward = type(m).forward

        def forward(x: torch.Tensor) -> torch.Tensor:
            dims = _bn_dims(x)
            records[m] = (x.mean(dims), x.var(dims, unbiased=False))
            return cls_forward(m, x)

        return forward

    @staticmethod
    def _norm_rate(m: _BatchNorm, records: dict):
        def forward(x: torch.Tensor) -> torch.Tensor:
            spike_mean, spike_var = records[m]
            dims = _bn_dims(x)
            mean, var = x.mean(dims), x.var(dims, unbiased=False)
            mean = mean + (spike_mean - mean).detach()  # value: spike stats; grad: rate BN
            var = var + (spike_var - var).detach()
            out = (x - _per_channel(mean, x)) * _per_channel(torch.rsqrt(var + m.eps), x)
            if m.affine:
                out = out * _per_channel(m.weight, x) + _per_channel(m.bias, x)
            return out

        return forward
