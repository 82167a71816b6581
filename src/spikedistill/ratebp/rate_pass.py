r"""The rate pass of rate-based backprop (``ratebp``, methods.md §4.2): the autograd functions
that stand in for a BatchNorm and a neuron when the model runs once on time-averaged inputs (its
tiling max-pools run as ``max_pool.TilingMaxPool``). Each keeps for backward only what its
gradient needs."""

from __future__ import annotations

import torch

from ..spiking.kernels.record import firing_rate
from ..spiking.norm_lif import bn_scale_shift
from ..spiking.saved_spikes import mark_rates


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
