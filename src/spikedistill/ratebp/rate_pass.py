r"""The rate pass of rate-based backprop (docs/methods.md §4.2): the model run once, at ``T = 1``,
on the time-averaged input, in a derived network (``derive``) whose neurons and BatchNorms are
the autograd functions below (each keeps for backward only what its gradient needs), fed by the
spike pass's records; its tiling max-pools run as ``max_pool.TilingMaxPool``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..spiking.kernels.record import firing_rate
from ..spiking.layers import FoldedNeuron
from ..spiking.max_pool import TilingMaxPool, is_tiling_max_pool, pool_size
from ..spiking.norm_lif import bn_scale_shift, has_hooks
from ..spiking.saved_spikes import mark_rates
from .derive import PhaseOf

_BatchNorm = nn.modules.batchnorm._BatchNorm


def _bn_dims(x: torch.Tensor) -> list[int]:
    return [0, *range(2, x.dim())]


def per_channel(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``v [C]`` shaped to broadcast over ``x [N, C, ...]``."""
    return v.view(1, -1, *([1] * (x.dim() - 2)))


class StraightThroughBatchNorm(torch.autograd.Function):
    r"""BatchNorm whose value uses given statistics ``(mu, var)`` and whose gradient is that
    of a train-mode BN on ``x`` itself, evaluated at those statistics:

        y = w k (x - mu) + b,     k = (var + eps)^{-1/2}
        dL/dx = w k (g - mean(g)) - w k^3 (x - mean(x)) mean(g (x - mu))

    with means over ``N = B*H*W`` per channel. Saves ``x`` only (the autograd chain of the
    same formula keeps four ``[B, ...]`` tensors)."""

    @staticmethod
    def forward(ctx, x, mu, var, weight, bias, eps: float):
        k = torch.rsqrt(var + eps)
        scale, shift = bn_scale_shift(weight, bias, mu, k)
        ctx.save_for_backward(x, mu, k, weight)
        return torch.mul(x, per_channel(scale, x)).add_(per_channel(shift, x))

    @staticmethod
    def backward(ctx, g):
        x, mu, k, weight = ctx.saved_tensors
        dims = _bn_dims(x)
        g_sum = g.sum(dims)
        gx_sum = (g * x).sum(dims)  # sum g (x - mu) = gx_sum - mu g_sum
        n = g.numel() // g.shape[1]
        g_mean, x_mean = g_sum / n, x.mean(dims)
        gxc_mean = gx_sum / n - mu * g_mean
        w = torch.ones_like(k) if weight is None else weight
        a = w * k  # dL/dx = a g - a mean(g) - w k^3 mean(g (x - mu)) (x - mean(x))
        c = w * k**3 * gxc_mean
        grad_x = g * per_channel(a, g) + per_channel(c * x_mean - a * g_mean, g)
        grad_x.sub_(x * per_channel(c, x))
        grad_w = (gx_sum - mu * g_sum) * k if weight is not None else None
        grad_b = g_sum if ctx.needs_input_grad[4] else None
        return grad_x, None, None, grad_w, grad_b, None


class RateNeuron(torch.autograd.Function):
    """Rate-pass neuron: value ``r = n / T`` (the spike-pass firing rate), gradient
    ``dL/dx = e * dL/dr``. Saves nothing (``e`` is the record); ``x`` is not kept, and a layer
    that saves ``r`` keeps the counts ``n`` instead (``mark_rates``)."""

    @staticmethod
    def forward(ctx, x, counts, elig, T: int):
        ctx.elig = elig
        return mark_rates(firing_rate(counts, T, x.dtype), counts, T)

    @staticmethod
    def backward(ctx, g):
        return g * ctx.elig, None, None, None


class RateNeuronPhase:
    """A ``FoldedNeuron`` in the rate pass: ``RateNeuron`` on its spike-pass record (``T`` is
    the spike pass's)."""

    original: FoldedNeuron
    records: dict
    spike_T: int

    def forward(self, x: torch.Tensor, static: bool = False) -> torch.Tensor:
        counts, elig = self.records[self.original]
        return RateNeuron.apply(x, counts, elig, self.spike_T)


class RateNorm:
    """A BatchNorm in the rate pass: ``StraightThroughBatchNorm`` at the spike-pass statistics."""

    original: _BatchNorm
    records: dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.original
        spike_mean, spike_var = self.records[m]
        return StraightThroughBatchNorm.apply(x, spike_mean, spike_var, m.weight, m.bias, m.eps)


class RatePool:
    """A tiling max-pool in the rate pass: ``TilingMaxPool`` (keeps only its argmax)."""

    original: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return TilingMaxPool.apply(x, pool_size(self.original))


def rate_phases(records: dict) -> PhaseOf:
    """What each module of the model becomes in the rate pass (``derive``)."""

    def phase_of(m: nn.Module) -> tuple[type, dict[str, Any]] | None:
        if isinstance(m, FoldedNeuron):
            return RateNeuronPhase, {"records": records, "spike_T": m.T}
        if isinstance(m, _BatchNorm):
            return RateNorm, {"records": records}
        if is_tiling_max_pool(m) and not has_hooks(m):
            return RatePool, {}
        return None

    return phase_of
