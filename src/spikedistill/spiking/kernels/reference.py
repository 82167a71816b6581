r"""The multi-step LIF scans in pure PyTorch: the kernels of the reference backend (``base``).

Forward loops over ``T`` and keeps only the pre-reset membrane ``v [T, B, ...]`` for backward
(spikes are ``v >= threshold``, so they need not be stored separately). Backward computes the
surrogate for all steps at once and then runs the reverse recurrence, one fused op per step:

    g_t = ds_t * sg_t + c_t * g_{t+1},      c_t = decay * du_t/dv_t,      dx_t = k * g_t

with ``du/dv = 1 - s`` (hard, detached), ``1 - s - v * sg`` (hard), ``1`` (soft, detached),
``1 - threshold * sg`` (soft) and ``k = 1 - decay`` if ``decay_input`` else 1.

``norm_lif_forward`` / ``norm_lif_backward`` are the scans of a LIF driven by a BatchNorm
(``norm_lif``): they keep no membrane; backward recomputes it, then runs the same recurrence one
step at a time in place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from ..config import NeuronConfig
from ..surrogate import surrogate_in_place
from .recurrence import charge, fire, input_gain, reset
from .unit import BatchStats, NormDrive


def lif_steps(
    x: torch.Tensor,
    cfg: NeuronConfig,
    membrane: torch.Tensor | None = None,
    spikes: torch.Tensor | None = None,
    fire_last: bool = True,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None]]:
    """Run the LIF over ``x [T, ...]`` and yield ``(t, v_t, s_t)`` at every step: the pre-reset
    membrane and the spikes (0/1 in the dtype of ``x``). They are written into ``membrane[t]``
    and ``spikes[t]`` when those ``[T, ...]`` buffers are given, else into scratch tensors that
    the next step overwrites. Charge, fire and reset are ``recurrence``'s. ``membrane`` may be ``x``
    itself (each ``v_t`` then overwrites ``x_t``). ``fire_last=False`` skips the last step's
    spikes (yielded as ``None``), for a recompute that needs only the membranes."""
    in_place = membrane is x and input_gain(cfg) == 1.0  # then v_0 = x_0 is there already
    v_scratch = torch.empty_like(x[0]) if membrane is None else None
    s_scratch = torch.empty_like(x[0]) if spikes is None else None
    u = None  # post-reset membrane of the previous step (u_0 = 0)
    for t in range(x.shape[0]):
        v = v_scratch if membrane is None else membrane[t]
        if not (in_place and u is None):
            charge(x[t], u, cfg, out=v)
        last = t + 1 == x.shape[0]
        if last and not fire_last:
            yield t, v, None
            break
        s = fire(v, cfg, out=s_scratch if spikes is None else spikes[t])
        yield t, v, s
        if last:
            break
        u = reset(v, s, cfg)


def lif_forward(
    x: torch.Tensor, cfg: NeuronConfig, keep_membrane: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Spikes ``[T, ...]`` (dtype of ``x``) and, if asked, the pre-reset membrane ``[T, ...]``."""
    spikes = torch.empty_like(x)
    membrane = torch.empty_like(x) if keep_membrane else None
    for _ in lif_steps(x, cfg, membrane, spikes):
        pass
    return spikes, membrane


def lif_backward(grad_spikes: torch.Tensor, membrane: torch.Tensor, cfg: NeuronConfig):
    """``dL/dx [T, ...]`` from ``dL/ds`` and the saved pre-reset membrane (see module doc)."""
    sg = surrogate_in_place(cfg.surrogate, membrane - cfg.threshold, cfg.alpha)
    grad = grad_spikes * sg  # becomes g_t in place, step by step
    if cfg.reset == "soft" and cfg.detach_reset:
        coeff = None  # c_t = decay
    elif cfg.reset == "soft":
        coeff = sg.mul_(-cfg.threshold * cfg.decay).add_(cfg.decay)
    else:
        not_fired = (membrane < cfg.threshold).to(membrane.dtype)
        coeff = not_fired if cfg.detach_reset else not_fired.sub_(sg.mul_(membrane))
        coeff.mul_(cfg.decay)
    for t in range(grad.shape[0] - 2, -1, -1):
        if coeff is None:
            grad[t].add_(grad[t + 1], alpha=cfg.decay)
        else:
            grad[t].addcmul_(coeff[t], grad[t + 1])
    if cfg.decay_input:
        grad.mul_(1.0 - cfg.decay)
    return grad


# -- BatchNorm + LIF (``norm_lif``): the neuron driven by y = x * scale + shift [+ residual] -----
def norm_drive(unit: NormDrive, in_place: bool = False) -> torch.Tensor:
    """The neuron input ``[T, rows, C, L]`` (a stride-0 view over T when ``static``) of a
    ``NormDrive``; ``in_place``: written over ``x`` (the caller's own buffer). A multiply,
    then an add, each rounded, as in the compiled scans, so every spike pass fires the same bits
    (a fused ``addcmul`` rounds once, and is slower on a CPU)."""
    x, T, static = unit.x, unit.T, unit.static
    rows = x.shape[0] if static else x.shape[0] // T
    per_step = x.view(1 if static else T, rows, x.shape[1], -1)
    scale = unit.scale.view(-1, 1)
    y = per_step.mul_(scale) if in_place else torch.mul(per_step, scale)
    y.add_(unit.shift.view(-1, 1))
    if unit.residual is not None:
        y.add_(unit.residual.reshape(y.shape))
    return y.expand(T, *y.shape[1:]) if static else y


def norm_lif_forward(unit: NormDrive, cfg: NeuronConfig) -> torch.Tensor:
    """Spikes ``[T, rows, C, L]`` of the LIF driven by ``norm_drive``, written over the drive
    (one ``[T, ...]`` buffer)."""
    drive = norm_drive(unit)
    if unit.static and unit.T > 1:
        spikes = torch.empty(drive.shape, dtype=drive.dtype, device=drive.device)
    else:
        spikes = drive
    for _ in lif_steps(drive, cfg, spikes=spikes):  # step t reads drive[t] before writing it
        pass
    return spikes


def norm_lif_backward(
    grad_spikes: torch.Tensor, spikes: torch.Tensor, unit: NormDrive, cfg: NeuronConfig
) -> torch.Tensor:
    """``dL/dy``, the gradient at the neuron input (``[rows, C, L]``, summed over T, when
    ``static``). The drive and the membrane are recomputed by the forward's own ops (the same
    values; ``spikes`` are not needed) into one ``[T, ...]`` buffer that then takes the gradient."""
    drive = norm_drive(unit)
    T, static = unit.T, unit.static
    if static and T > 1:  # a view over time: the membranes need a buffer of their own
        membrane = torch.empty(drive.shape, dtype=drive.dtype, device=drive.device)
    else:
        membrane = drive
    for _ in lif_steps(drive, cfg, membrane=membrane, fire_last=False):
        pass
    grad = lif_backward_in_place(grad_spikes.view(membrane.shape), membrane, cfg)
    if not static:
        return grad
    return grad[0] if T == 1 else grad.sum(0)


def lif_backward_in_place(grad_spikes: torch.Tensor, membrane: torch.Tensor, cfg: NeuronConfig):
    """``lif_backward`` one step at a time, writing ``g_t = dL/dx_t`` over ``membrane[t]`` as
    that step's membrane is used up: besides ``membrane`` only the step's surrogate (and, for a
    hard reset, a bool mask) is allocated. ``g_t = ds_t sg_t + c_t g_{t+1}`` as in the module
    docstring, each reset mode ordered so that ``v_t`` is read before it is overwritten."""
    later = None  # g_{t+1}
    for t in range(membrane.shape[0] - 1, -1, -1):
        v, ds = membrane[t], grad_spikes[t]
        sg = surrogate_in_place(cfg.surrogate, v - cfg.threshold, cfg.alpha)
        if later is None:
            torch.mul(ds, sg, out=v)
        elif cfg.reset == "soft" and cfg.detach_reset:  # c = decay
            torch.add(sg.mul_(ds), later, alpha=cfg.decay, out=v)
        elif cfg.reset == "soft":  # c = decay (1 - th sg): g = sg (ds - th decay g') + decay g'
            torch.add(ds, later, alpha=-cfg.threshold * cfg.decay, out=v).mul_(sg)
            v.add_(later, alpha=cfg.decay)
        else:  # c = decay (1[v < th] [- v sg]): g = ds sg + decay (c / decay) g'
            below = v < cfg.threshold
            if cfg.detach_reset:
                torch.mul(later, below, out=v)
            else:
                torch.addcmul(below, v, sg, value=-1.0, out=v).mul_(later)
            torch.add(sg.mul_(ds), v, alpha=cfg.decay, out=v)
        later = v
    if cfg.decay_input:
        membrane.mul_(1.0 - cfg.decay)
    return membrane


def with_bits(spikes: torch.Tensor, unit: NormDrive) -> tuple[torch.Tensor, torch.Tensor]:
    """A scan's float spikes ``[T, rows, C, L]`` as the unit's output ``[T*rows, C, ...]``, and
    their ``bool`` copy (a backend's ``norm_forward``)."""
    spikes = spikes.view(unit.out_shape)
    return spikes, spikes.to(torch.bool)


def composite_input_backward(
    norm_backward: Callable[..., torch.Tensor],
    grad_spikes: torch.Tensor,
    spikes: torch.Tensor,
    unit: NormDrive,
    stats: BatchStats,
    cfg: NeuronConfig,
    needs: tuple[bool, bool, bool, bool],
) -> tuple[torch.Tensor | None, ...]:
    """A BatchNorm + LIF unit's backward ``(dL/dx, dL/dw, dL/db, dL/dr)``, each ``None`` where
    ``needs`` (for x, w, b, r) is false, from a backend's ``norm_backward`` (``dL/dy``) followed
    by ATen's BatchNorm backward (train mode, batch statistics ``mean``, ``invstd``)."""
    x, residual = unit.x, unit.residual
    grad_y = norm_backward(grad_spikes, spikes, unit, cfg)
    grad_x, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
        grad_y.reshape(x.shape), x, stats.weight, None, None, stats.mean, stats.invstd, True,
        0.0, list(needs[:3]),
    )  # fmt: skip
    return grad_x, grad_w, grad_b, grad_y.reshape(residual.shape) if needs[3] else None
