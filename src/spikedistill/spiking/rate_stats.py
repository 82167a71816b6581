r"""Spike-pass statistics of rate-based backpropagation (Rate-BP, methods.md §4.2).

For an input ``x [T, ...]`` the neuron's firing rate ``r = mean_t s_t`` and its eligibility

    e = (1/T) sum_t eps_t * sg(v_t - threshold),      eps_1 = c,   eps_{t+1} = c + rho_t eps_t

where ``c`` is the input scale (``1 - decay`` with ``decay_input``, else 1) and ``eps_t`` is
``d v_t / d xbar`` for an input held constant over time:

- soft reset, detached:     ``rho_t = decay``
- soft reset, not detached: ``rho_t = decay * (1 - threshold * sg_t)``
- hard reset, detached:     ``rho_t = decay * (1 - s_t)``
- hard reset, not detached: ``rho_t = decay * (1 - s_t - v_t * sg_t)``

so ``e`` approximates ``d r / d xbar``, the slope of the rate-versus-mean-input curve. Computed
without autograd in one pass over time (nothing of size ``T`` is kept).
"""

from __future__ import annotations

import torch

from .config import NeuronConfig
from .surrogate import surrogate_derivative


@torch.no_grad()
def rate_and_eligibility(
    x: torch.Tensor, cfg: NeuronConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(spikes [T, ...], rate [...], eligibility [...])`` of a LIF neuron driven by ``x``."""
    c = 1.0 - cfg.decay if cfg.decay_input else 1.0
    spikes = torch.empty_like(x)
    rate = torch.zeros_like(x[0])
    elig = torch.zeros_like(x[0])
    u = torch.zeros_like(x[0])
    eps = torch.full_like(x[0], c)
    for t in range(x.shape[0]):
        v = cfg.decay * u + c * x[t]
        fired = v >= cfg.threshold
        s = fired.to(x.dtype)
        sg = surrogate_derivative(cfg.surrogate, v - cfg.threshold, cfg.alpha)
        spikes[t] = s
        rate += s
        elig += eps * sg
        if cfg.reset == "hard":
            u = v * (1 - s)
            rho = (1 - s) if cfg.detach_reset else (1 - s - v * sg)
        else:
            u = v - cfg.threshold * s
            rho = torch.ones_like(v) if cfg.detach_reset else 1 - cfg.threshold * sg
        eps = c + cfg.decay * rho * eps
    T = x.shape[0]
    return spikes, rate / T, elig / T
