r"""Spike-pass statistics of rate-based backpropagation (Rate-BP, methods.md §4.2).

For an input ``x [T, ...]`` the neuron's firing rate ``r = mean_t s_t`` and its eligibility

    e = (1/T) sum_t eps_t * sg(v_t - threshold),      eps_1 = c,   eps_{t+1} = c + rho_t eps_t

where ``c`` is the input scale (``1 - decay`` with ``decay_input``, else 1) and ``eps_t`` is
``d v_t / d xbar`` for an input held constant over time:

- soft reset, detached:     ``rho_t = decay``  (``eps_t`` is then a number, not a tensor)
- soft reset, not detached: ``rho_t = decay * (1 - threshold * sg_t)``
- hard reset, detached:     ``rho_t = decay * (1 - s_t)``
- hard reset, not detached: ``rho_t = decay * (1 - s_t - v_t * sg_t)``

so ``e`` approximates ``d r / d xbar``, the slope of the rate-versus-mean-input curve. Computed
without autograd while the neuron runs (``lif_steps``): only ``[B, ...]`` tensors are kept,
and the spikes are returned as ``bool``.
"""

from __future__ import annotations

import torch

from .config import NeuronConfig
from .lif_function import lif_steps
from .surrogate import surrogate_in_place


@torch.no_grad()
def rate_and_eligibility(
    x: torch.Tensor, cfg: NeuronConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(spikes [T, ...] bool, rate [...], eligibility [...])`` of a LIF driven by ``x``.

    ``x`` may be any ``[T, ...]`` view, e.g. a static input expanded over time."""
    c = 1.0 - cfg.decay if cfg.decay_input else 1.0
    T = x.shape[0]
    spikes = torch.empty(x.shape, dtype=torch.bool, device=x.device)
    rate = torch.zeros_like(x[0])  # summed in the loop: a sum over the bool [T, ...] spikes
    elig = torch.zeros_like(x[0])  # would first convert all of them to float
    eps: float | torch.Tensor = c
    constant_eps = cfg.reset == "soft" and cfg.detach_reset
    for t, v, s in lif_steps(x, cfg):
        spikes[t].copy_(s)
        rate.add_(s)
        sg = surrogate_in_place(cfg.surrogate, v - cfg.threshold, cfg.alpha)
        if isinstance(eps, float):
            elig.add_(sg, alpha=eps)
        else:
            elig.addcmul_(sg, eps)
        if constant_eps:
            eps = c + cfg.decay * eps
            continue
        if t + 1 == T:
            break
        if cfg.reset == "hard":  # rho / decay = 1 - s [- v sg]
            rho = 1.0 - s if cfg.detach_reset else (1.0 - s).sub_(sg.mul_(v))
        else:  # rho / decay = 1 - threshold sg
            rho = sg.mul_(-cfg.threshold).add_(1.0)
        eps = rho.mul_(eps).mul_(cfg.decay).add_(c)
    return spikes, rate.div_(T), elig.div_(T)
