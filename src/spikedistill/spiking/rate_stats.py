r"""Spike-pass statistics of rate-based backpropagation (Rate-BP, methods.md §4.2).

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
without autograd in one pass over time that accumulates ``e`` as it goes: no membrane
sequence is kept, the neurons are scanned ``SCAN_CHUNK`` at a time with two float buffers of
that size (none when the caller gives its drive away, ``writable``), so memory grows with ``T``
only by the ``bool`` spikes. The charge, fire
and reset ops are those of ``lif_steps``, so the spikes are the same bits as the BPTT forward's.
"""

from __future__ import annotations

import torch

from .config import NeuronConfig
from .surrogate import surrogate_in_place

#: neurons per scan: the scratch of a static or read-only drive is two such float buffers
SCAN_CHUNK = 1 << 18


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
    """``(spikes [T, ...] bool, counts [...], eligibility [...])`` of a LIF driven by ``x``.

    ``x`` is ``[T, ...]``, or a static input expanded over time (stride 0). ``writable``: ``x``
    is the caller's own contiguous buffer, used as the membranes' scratch (overwritten)."""
    T, step_shape = x.shape[0], x.shape[1:]
    static = T > 1 and x.stride(0) == 0
    drive = x[0].reshape(1, -1).expand(T, -1) if static else x.reshape(T, -1)
    in_place = writable and not static and drive.data_ptr() == x.data_ptr()
    n = drive.shape[-1]
    spikes = torch.empty((T, n), dtype=torch.bool, device=x.device)
    counts = torch.zeros(n, dtype=count_dtype(T), device=x.device)
    elig = torch.zeros(n, dtype=x.dtype, device=x.device)
    size = min(n, SCAN_CHUNK)
    scratch = None if in_place else drive.new_empty((2, size))
    for start in range(0, n, size):
        part = slice(start, min(n, start + size))
        buffers = None if scratch is None else scratch[:, : part.stop - start]
        _scan(drive[:, part], spikes[:, part], counts[part], elig[part], cfg, buffers)
    return spikes.view(T, *step_shape), counts.view(step_shape), elig.div_(T).view(step_shape)


def norm_spike_statistics(
    x: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    residual: torch.Tensor | None,
    cfg: NeuronConfig,
    T: int,
    static: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``spike_statistics`` of the LIF driven by ``x * scale + shift [+ residual]``: a
    BatchNorm input ``x [T*rows, C, ...]`` (``[rows, C, ...]`` when ``static``; the caller's own
    buffer, normalised in place) and per-channel ``scale``, ``shift``. Returns ``[T, rows, ...]``
    spikes and ``[rows, ...]`` counts and eligibility."""
    shape = (-1, *([1] * (x.dim() - 2)))
    drive = x.mul_(scale.view(shape)).add_(shift.view(shape))
    if residual is not None:
        drive.add_(residual)
    if static:
        return spike_statistics(drive.expand(T, *drive.shape), cfg)
    return spike_statistics(drive.view(T, -1, *drive.shape[1:]), cfg, writable=True)


def _scan(drive, spikes, counts, elig, cfg: NeuronConfig, scratch) -> None:
    """One pass over the steps of ``drive [T, n]``: spikes into ``spikes [T, n]`` (bool),
    their sum into ``counts``, ``T * e`` into ``elig`` (zeros). The membrane ``v_t`` goes into
    ``drive[t]`` (``scratch`` None) or into one of the two ``scratch`` buffers, and the other
    one takes the surrogate. ``lif_steps``'s charge, fire and reset ops on a float 0/1 copy of
    the spikes (float compares and arithmetic beat those on ``bool``), so the spikes are the
    BPTT forward's bits."""
    T, c = drive.shape[0], (1.0 - cfg.decay if cfg.decay_input else 1.0)
    eps: float | torch.Tensor = c if cfg.reset == "soft" and cfg.detach_reset else None
    if eps is None:  # eps_t depends on the neuron: a tensor
        eps = torch.full_like(drive[0], c)
    fired, total = torch.empty_like(drive[0]), torch.zeros_like(drive[0])
    u = None  # post-reset membrane of the previous step
    for t in range(T):
        v = drive[t] if scratch is None else scratch[t % 2]
        if c != 1.0:
            torch.mul(drive[t], c, out=v)
            if u is not None:
                v.add_(u, alpha=cfg.decay)
        elif u is None:
            if v.data_ptr() != drive[t].data_ptr():
                v.copy_(drive[t])
        else:
            torch.add(drive[t], u, alpha=cfg.decay, out=v)
        torch.ge(v, cfg.threshold, out=fired)
        spikes[t].copy_(fired)
        total.add_(fired)
        # the surrogate goes where u was (read above, free now)
        free = u if u is not None else scratch[1] if scratch is not None else torch.empty_like(v)
        sg = surrogate_in_place(cfg.surrogate, torch.sub(v, cfg.threshold, out=free), cfg.alpha)
        if isinstance(eps, float):
            elig.add_(sg, alpha=eps)
        else:
            elig.addcmul_(sg, eps)
        if t + 1 == T:
            break
        if isinstance(eps, float):  # soft reset, detached: rho = decay
            eps = c + cfg.decay * eps
        else:
            if cfg.reset == "hard":  # rho / decay = 1 - s [- v sg]
                rho = sg.mul_(v) if not cfg.detach_reset else sg.zero_()
                rho.add_(fired).neg_().add_(1.0)
            else:  # rho / decay = 1 - threshold sg
                rho = sg.mul_(-cfg.threshold).add_(1.0)
            eps.mul_(rho).mul_(cfg.decay).add_(c)
        if cfg.reset == "hard":
            u = v.addcmul_(v, fired, value=-1.0)
        else:
            u = v.sub_(fired, alpha=cfg.threshold)
    counts.copy_(total)
