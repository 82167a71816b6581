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
without autograd: the membranes of a chunk of neurons are kept for all ``T`` steps, then the
surrogate runs on the whole chunk at once (a weighted sum over time for the default soft,
detached reset). Chunks hold at most ``STORED_STEPS`` steps' worth of the layer, so memory does
not grow with ``T``; a drive the caller gives away (``writable``) holds the membranes itself.
Spikes are returned as ``bool``; the charge, fire and reset ops are those of ``lif_steps``, so
the spikes are the same bits as the BPTT forward's.
"""

from __future__ import annotations

import torch

from .config import NeuronConfig
from .surrogate import surrogate_in_place

#: a chunk of neurons keeps its membranes for at most this many steps' worth of the layer
STORED_STEPS = 4


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
    is the caller's own contiguous buffer, overwritten with the membranes (no chunking)."""
    T, step_shape = x.shape[0], x.shape[1:]
    static = T > 1 and x.stride(0) == 0
    base = x[0].reshape(-1) if static else x.reshape(T, -1)
    in_place = writable and not static and base.data_ptr() == x.data_ptr()
    n = base.shape[-1]
    spikes = torch.empty((T, n), dtype=torch.bool, device=x.device)
    counts = torch.zeros(n, dtype=count_dtype(T), device=x.device)
    elig = torch.empty(n, dtype=x.dtype, device=x.device)
    size = n if in_place else max(1, n * min(T, STORED_STEPS) // T)
    for start in range(0, n, size):
        part = slice(start, min(n, start + size))
        drive = base[part] if static else base[:, part]
        v = base[:, part] if in_place else x.new_empty((T, part.stop - part.start))
        counts[part] = _charge_fire_reset(drive, v, spikes[:, part], cfg, static)
        elig[part] = _eligibility(v, spikes[:, part], cfg)
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


def _charge_fire_reset(drive, v, spikes, cfg: NeuronConfig, static: bool) -> torch.Tensor:
    """Membranes into ``v [T, n]`` (which may be ``drive`` itself), spikes into ``spikes``;
    returns the spike counts (float). ``lif_steps``'s ops, with a float 0/1 scratch beside the
    bool spikes (arithmetic on bool tensors converts them first)."""
    scale = 1.0 - cfg.decay if cfg.decay_input else 1.0
    fired = torch.empty_like(v[0])
    counts = torch.zeros_like(v[0])
    u = None  # post-reset membrane of the previous step
    for t in range(v.shape[0]):
        d, vt = (drive if static else drive[t]), v[t]
        if scale != 1.0:
            torch.mul(d, scale, out=vt)
            if u is not None:
                vt.add_(u, alpha=cfg.decay)
        elif u is None:
            if vt.data_ptr() != d.data_ptr():
                vt.copy_(d)
        else:
            torch.add(d, u, alpha=cfg.decay, out=vt)
        torch.ge(vt, cfg.threshold, out=fired)
        torch.ge(vt, cfg.threshold, out=spikes[t])
        counts.add_(fired)
        if t + 1 < v.shape[0]:
            if cfg.reset == "hard":
                u = torch.addcmul(vt, vt, fired, value=-1.0)
            else:
                u = torch.sub(vt, fired, alpha=cfg.threshold)
    return counts


def _eligibility(v: torch.Tensor, spikes: torch.Tensor, cfg: NeuronConfig) -> torch.Tensor:
    """``T * e`` from the membranes ``v [T, n]`` (consumed) and ``spikes [T, n]``."""
    T, c = v.shape[0], (1.0 - cfg.decay if cfg.decay_input else 1.0)
    if cfg.reset == "soft" and cfg.detach_reset:  # eps_t are numbers: one weighted sum
        eps = [c]
        for _ in range(T - 1):
            eps.append(c + cfg.decay * eps[-1])
        sg = surrogate_in_place(cfg.surrogate, v.sub_(cfg.threshold), cfg.alpha)
        return torch.tensordot(torch.tensor(eps, dtype=v.dtype, device=v.device), sg, dims=1)
    elig = torch.zeros_like(v[0])
    eps: float | torch.Tensor = c
    for t in range(T):
        sg = surrogate_in_place(cfg.surrogate, v[t] - cfg.threshold, cfg.alpha)
        if isinstance(eps, float):
            elig.add_(sg, alpha=eps)
        else:
            elig.addcmul_(sg, eps)
        if t + 1 == T:
            break
        if cfg.reset == "hard":  # rho / decay = 1 - s [- v sg]
            rho = (~spikes[t]).to(v.dtype)
            if not cfg.detach_reset:
                rho.addcmul_(sg, v[t], value=-1.0)
        else:  # rho / decay = 1 - threshold sg
            rho = sg.mul_(-cfg.threshold).add_(1.0)
        eps = rho.mul_(eps).mul_(cfg.decay).add_(c)
    return elig
