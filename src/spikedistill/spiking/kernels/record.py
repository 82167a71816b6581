r"""Spike-pass statistics of rate-based backpropagation (Rate-BP, docs/methods.md §4.2).

For an input ``x [T, ...]`` the neuron's spike count ``n = sum_t s_t`` (the firing rate is
``r = n / T``; a count takes one byte) and its eligibility

    e = (1/T) sum_t eps_t * sg(v_t - threshold),      eps_1 = c,   eps_{t+1} = c + rho_t eps_t

where ``c`` is the input scale (``1 - decay`` with ``decay_input``, else 1) and ``eps_t`` is
``d v_t / d xbar`` for an input held constant over time:

- soft reset, detached:     ``rho_t = decay``  (``eps_t`` is then a number, not a tensor)
- soft reset, not detached: ``rho_t = decay * (1 - threshold * sg_t)``
- hard reset, detached:     ``rho_t = decay * (1 - s_t)``
- hard reset, not detached: ``rho_t = decay * (1 - s_t - v_t * sg_t)``

so ``e`` approximates ``d r / d xbar``, the slope of the rate-versus-mean-input curve. Computed
without autograd in the neuron's own forward scan (``lif_steps``, so the spikes are the same
bits as the BPTT forward's), accumulating ``e`` step by step: no membrane sequence is kept, the
neurons are scanned ``SCAN_CHUNK`` at a time so that the scan's temporaries stay small, and the
spikes are written 8 steps per byte (``spike_pack``): memory grows with ``T`` by one bit per
neuron and step.
"""

from __future__ import annotations

import torch

from ..config import NeuronConfig
from ..surrogate import surrogate_in_place
from .recurrence import input_gain
from .reference import lif_steps, norm_drive
from .spike_pack import BITS, packed_steps
from .unit import NormDrive

#: neurons per scan: the scan's float temporaries are a few vectors of this size
SCAN_CHUNK = 1 << 16


def count_dtype(T: int) -> torch.dtype:
    """The smallest dtype that holds spike counts up to ``T``."""
    return torch.uint8 if T < 256 else torch.int32


def firing_rate(counts: torch.Tensor, T: int, dtype: torch.dtype) -> torch.Tensor:
    """``r = n / T`` as a new ``dtype`` tensor."""
    return counts.to(dtype).div_(T)


@torch.no_grad()
def spike_statistics(
    x: torch.Tensor, cfg: NeuronConfig, writable: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(spikes, counts [...], eligibility [...])`` of a LIF driven by ``x``; the spikes are
    packed, ``uint8 [ceil(T/8), ...]`` (``spike_pack``).

    ``x`` is ``[T, ...]``, or a static input expanded over time (stride 0). ``writable``: ``x``
    is the caller's own contiguous buffer, overwritten with the membranes."""
    T, step_shape = x.shape[0], x.shape[1:]
    static = T > 1 and x.stride(0) == 0
    drive = x[0].reshape(1, -1).expand(T, -1) if static else x.reshape(T, -1)
    in_place = writable and not static and drive.data_ptr() == x.data_ptr()
    n = drive.shape[-1]
    spikes = torch.empty((packed_steps(T), n), dtype=torch.uint8, device=x.device)
    counts = torch.zeros(n, dtype=count_dtype(T), device=x.device)
    elig = torch.zeros(n, dtype=x.dtype, device=x.device)
    for start in range(0, n, SCAN_CHUNK):
        part = slice(start, min(n, start + SCAN_CHUNK))
        _scan(drive[:, part], spikes[:, part], counts[part], elig[part], cfg, in_place)
    return spikes.view(-1, *step_shape), counts.view(step_shape), elig.div_(T).view(step_shape)


def norm_spike_statistics(
    unit: NormDrive, cfg: NeuronConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``spike_statistics`` of the LIF driven by a ``NormDrive``, ``x * scale + shift
    [+ residual]``, whose ``x`` (the caller's own buffer) is normalised in place. Returns packed
    spikes ``uint8 [ceil(T/8), rows, ...]`` and ``[rows, ...]`` counts and eligibility."""
    x, T, static = unit.x, unit.T, unit.static
    step_shape = x.shape if static else (x.shape[0] // T, *x.shape[1:])
    drive = norm_drive(unit, in_place=True)
    spikes, counts, elig = spike_statistics(drive, cfg, writable=not static)
    return spikes.view(-1, *step_shape), counts.view(step_shape), elig.view(step_shape)


def _scan(drive, spikes, counts, elig, cfg: NeuronConfig, in_place: bool) -> None:
    """One pass of ``lif_steps`` over ``drive [T, n]`` (its membranes written into ``drive``
    itself when ``in_place``): spikes into ``spikes [ceil(T/8), n]`` (bit ``t % 8`` of byte
    ``t // 8``, summed as ``2^b s`` in a float scratch over each byte's steps), their sum into
    ``counts``, ``T * e`` into ``elig`` (zeros), each step's surrogate taken as it is run."""
    c = input_gain(cfg)
    # eps_t is a number for the soft, detached reset, else it depends on the neuron
    soft_detached = cfg.reset == "soft" and cfg.detach_reset
    eps: float | torch.Tensor = c if soft_detached else torch.full_like(drive[0], c)
    total, sg, byte = (
        torch.zeros_like(drive[0]),
        torch.empty_like(drive[0]),
        torch.empty_like(drive[0]),
    )
    last = drive.shape[0] - 1
    for t, v, s in lif_steps(drive, cfg, membrane=drive if in_place else None):
        j, b = divmod(t, BITS)
        if b == 0:
            byte.copy_(s)
        else:
            byte.add_(s, alpha=1 << b)
        if b == BITS - 1 or t == last:
            spikes[j].copy_(byte)
        total.add_(s)
        surrogate_in_place(cfg.surrogate, torch.sub(v, cfg.threshold, out=sg), cfg.alpha)
        if isinstance(eps, float):
            elig.add_(sg, alpha=eps)
            eps = c + cfg.decay * eps  # soft reset, detached: rho = decay
            continue
        elig.addcmul_(sg, eps)
        if t == last:
            break
        # eps <- c + decay * rho / decay * eps, with rho / decay = 1 - w
        if cfg.reset == "soft":  # w = threshold sg
            eps.addcmul_(eps, sg, value=-cfg.threshold)
        else:  # w = s [+ v sg]
            w = s if cfg.detach_reset else torch.addcmul(s, sg, v, out=sg)
            eps.addcmul_(eps, w, value=-1.0)
        eps.mul_(cfg.decay).add_(c)
    counts.copy_(total)
