r"""Triton kernels of the multi-step LIF scans (``recurrence``'s charge, fire, reset), one
program per block of neurons looping over T. Imported only by the ``triton`` backend; on a CPU
they run under Triton's interpreter (``TRITON_INTERPRET=1``, set before this import).

A step holds ``N`` neurons, contiguous (``[T, N]``); a BatchNorm-driven neuron (``norm_lif``)
``i`` is in channel ``(i // L) % C`` of ``[rows, C, L]`` and reads ``y_t = x_t scale + shift
[+ r_t]`` (``x`` one step when static). Per neuron:

    forward:   v_t = k y_t + decay u_{t-1},  s_t = 1[v_t >= th],  u_t = v_t - v_t s_t (hard)
               or v_t - th s_t (soft)
    backward:  g_t = ds_t sg_t + decay du_t/dv_t g_{t+1},  dL/dy_t = k g_t

with ``du/dv`` of ``reference`` (``_reset_slope``). The unit's backward recomputes the
membrane into its output buffer, then runs the reverse scan over it in place.

Rounding. The spikes must be the reference's bits, so every op rounds on its own, as in
``recurrence`` (no fused multiply-add): the drive is a multiply, then adds
(``reference.norm_drive``), and the charge ``k y`` and ``decay u``, then their sum. On CUDA,
Triton 3.9 lets LLVM and ptxas contract any ``a * b + c`` into an FMA by default, which would
round once and flip spikes that sit within rounding of the threshold; every kernel is
therefore launched with ``enable_fp_fusion=False`` (``EXACT``). The interpreter (numpy) never
contracts; ``scripts/triton_machine_code.py`` compiles every launch for sm_90 without a GPU and
checks its PTX for anything ptxas could fuse.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ..config import NeuronConfig
from .recurrence import input_gain
from .unit import NormDrive

BLOCK = 256
#: surrogate name -> the kernels' compile-time id
SURROGATE_IDS = {"triangle": 0, "sigmoid": 1, "atan": 2, "rectangle": 3}
#: launch options of every kernel: no multiply-add contraction (see the module docstring)
EXACT = {"enable_fp_fusion": False}


@triton.jit
def surrogate(x, alpha, KIND: tl.constexpr):
    """``sg(x)`` of ``surrogate.py`` (``x = v - threshold``)."""
    if KIND == 0:
        return tl.maximum(tl.abs(x) * (-alpha * alpha) + alpha, 0.0)
    elif KIND == 1:
        sig = tl.sigmoid(alpha * x)
        return alpha * sig * (1.0 - sig)
    elif KIND == 2:
        z = (math.pi / 2) * alpha * x
        return (alpha / 2) / (1.0 + z * z)
    else:
        return tl.where(tl.abs(x) < 0.5 / alpha, alpha, 0.0)


@triton.jit
def channel_affine(scale_ptr, shift_ptr, offs, mask, C, L):
    """Each neuron's ``(scale, shift)``: those of its channel ``(i // L) % C``."""
    channel = (offs // L) % C
    scale = tl.load(scale_ptr + channel, mask=mask, other=1.0)
    return scale, tl.load(shift_ptr + channel, mask=mask, other=0.0)


@triton.jit
def drive(x_ptr, r_ptr, offs, mask, scale, shift, AFFINE: tl.constexpr, RESIDUAL: tl.constexpr):
    """``y = x scale + shift [+ r]`` (``AFFINE``, ``RESIDUAL``; else ``y = x``): a multiply, then
    adds, each rounded (no contraction under ``EXACT``)."""
    y = tl.load(x_ptr + offs, mask=mask, other=0.0)
    if AFFINE:
        y = y * scale + shift
    if RESIDUAL:
        y = y + tl.load(r_ptr + offs, mask=mask, other=0.0)
    return y


@triton.jit
def charge(y, u, gain, decay, GAIN: tl.constexpr):
    """``v = k y + decay u`` rounded as the reference's ``charge``: ``k y`` (when ``GAIN``) and
    ``decay u``, each rounded, then their sum (``u = 0`` at the first step: ``v = k y``)."""
    if GAIN:
        y = y * gain
    return y + decay * u


@triton.jit
def reset(v, s, threshold, HARD: tl.constexpr):
    """``u = v - v s`` (hard) or ``v - threshold s`` (soft); exact for 0/1 ``s``."""
    if HARD:
        return v - v * s
    else:
        return v - threshold * s


@triton.jit
def reset_slope(v, s, sg, threshold, HARD: tl.constexpr, DETACH: tl.constexpr):
    """``du_t/dv_t``: ``1 - s_t`` (hard) or 1 (soft), less ``v_t sg_t`` (hard) or
    ``threshold sg_t`` (soft) when the reset is not detached."""
    if HARD:
        slope = 1.0 - s
        if not DETACH:
            slope = slope - v * sg
    elif DETACH:
        slope = 1.0
    else:
        slope = 1.0 - threshold * sg
    return slope


@triton.jit
def _forward_scan(x_ptr, scale_ptr, shift_ptr, r_ptr, s_ptr, bits_ptr, v_ptr,
                  T, N, C, L, gain, decay, threshold,
                  AFFINE: tl.constexpr, RESIDUAL: tl.constexpr, STATIC: tl.constexpr,
                  SPIKES: tl.constexpr, BITS: tl.constexpr, KEEP: tl.constexpr,
                  HARD: tl.constexpr, GAIN: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """Charge, fire, reset over ``T`` steps of ``N`` neurons driven by ``drive`` (``x [T, N]``,
    or ``[N]`` at every step when ``STATIC``): the spikes to ``s`` (float, ``SPIKES``) and
    ``bits`` (bool, ``BITS``: stored as such, no byte view for torch.compile to lower), the
    pre-reset membrane to ``v`` (``KEEP``)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    scale, shift = 1.0, 0.0
    if AFFINE:
        scale, shift = channel_affine(scale_ptr, shift_ptr, offs, mask, C, L)
    u = tl.zeros([BLOCK], dtype=tl.float32)
    for t in range(T):
        step = t * N
        x_t = x_ptr if STATIC else x_ptr + step
        v = charge(drive(x_t, r_ptr + step, offs, mask, scale, shift, AFFINE, RESIDUAL),
                   u, gain, decay, GAIN)  # fmt: skip
        fired = v >= threshold
        s = fired.to(tl.float32)
        if SPIKES:
            tl.store(s_ptr + step + offs, s, mask=mask)
        if BITS:
            tl.store(bits_ptr + step + offs, fired, mask=mask)
        if KEEP:
            tl.store(v_ptr + step + offs, v, mask=mask)
        u = reset(v, s, threshold, HARD)


@triton.jit
def _backward_scan(ds_ptr, v_ptr, g_ptr, T, N, gain, decay, threshold, alpha,
                   HARD: tl.constexpr, DETACH: tl.constexpr, GAIN: tl.constexpr,
                   SUM: tl.constexpr, SURROGATE: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """The reverse recurrence from ``dL/ds [T, N]`` and the membrane ``v [T, N]``: ``k g_t``
    to ``g [T, N]`` (which may be ``v`` itself: step t reads ``v_t`` before writing there), or
    summed over t into ``g [N]`` (``SUM``, a static drive)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    later = tl.zeros([BLOCK], dtype=tl.float32)  # g_{t+1}
    total = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(T):
        step = (T - 1 - i) * N
        v = tl.load(v_ptr + step + offs, mask=mask, other=0.0)
        ds = tl.load(ds_ptr + step + offs, mask=mask, other=0.0)
        sg = surrogate(v - threshold, alpha, SURROGATE)
        s = (v >= threshold).to(tl.float32)
        g = ds * sg + decay * reset_slope(v, s, sg, threshold, HARD, DETACH) * later
        later = g
        if GAIN:
            g = g * gain
        if SUM:
            total += g
        else:
            tl.store(g_ptr + step + offs, g, mask=mask)
    if SUM:
        tl.store(g_ptr + offs, total, mask=mask)


def grid(n: int, block: int = BLOCK) -> tuple[int]:
    return (triton.cdiv(n, block),)


def neuron_meta(cfg: NeuronConfig) -> dict:
    """The neuron's compile-time flags."""
    return {"HARD": cfg.reset == "hard", "GAIN": input_gain(cfg) != 1.0}


def gradient_meta(cfg: NeuronConfig) -> dict:
    """The neuron's flags for a gradient (or eligibility) scan."""
    meta = neuron_meta(cfg)
    return {**meta, "DETACH": cfg.detach_reset, "SURROGATE": SURROGATE_IDS[cfg.surrogate]}


def constants(cfg: NeuronConfig) -> tuple[float, float, float]:
    """``(k, decay, threshold)``, the scalar arguments of every scan."""
    return input_gain(cfg), cfg.decay, cfg.threshold


def unit_layout(unit: NormDrive) -> tuple[int, int, int]:
    """``(N, C, L)`` of a unit's drive: neurons per step, channels, neurons per channel block."""
    x = unit.x
    n = x.numel() if unit.static else x.numel() // unit.T
    return n, x.shape[1], math.prod(x.shape[2:])


def unit_inputs(unit: NormDrive) -> tuple[torch.Tensor, ...]:
    """``(x, scale, shift, residual)`` as the kernels take them (``x`` in place of a missing
    residual: the pointer is not read)."""
    residual = unit.x if unit.residual is None else unit.residual.contiguous()
    return unit.x, unit.scale, unit.shift, residual


def lif_forward(
    x: torch.Tensor, cfg: NeuronConfig, keep_membrane: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Spikes ``[T, ...]`` and, if asked, the pre-reset membrane (float32, contiguous ``x``)."""
    T, n = x.shape[0], x[0].numel()
    spikes = torch.empty_like(x)
    membrane = torch.empty_like(x) if keep_membrane else spikes  # unused unless kept
    _forward_scan[grid(n)](
        x, x, x, x, spikes, spikes, membrane, T, n, 1, 1, *constants(cfg),
        AFFINE=False, RESIDUAL=False, STATIC=False, SPIKES=True, BITS=False, KEEP=keep_membrane,
        BLOCK=BLOCK, **neuron_meta(cfg), **EXACT,
    )  # fmt: skip
    return spikes, membrane if keep_membrane else None


def lif_backward(
    grad_spikes: torch.Tensor, membrane: torch.Tensor, cfg: NeuronConfig
) -> torch.Tensor:
    """``dL/dx [T, ...]`` from ``dL/ds`` and the pre-reset membrane (float32, contiguous)."""
    T, n = membrane.shape[0], membrane[0].numel()
    grad = torch.empty_like(membrane)
    _backward_scan[grid(n)](
        grad_spikes, membrane, grad, T, n, *constants(cfg), cfg.alpha,
        SUM=False, BLOCK=BLOCK, **gradient_meta(cfg), **EXACT,
    )  # fmt: skip
    return grad


def norm_forward(unit: NormDrive, cfg: NeuronConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The unit's spikes ``[T*rows, C, ...]`` (float32) and the same as ``bool``, one pass."""
    n, C, L = unit_layout(unit)
    x = unit.x
    spikes = x.new_empty(unit.out_shape)
    bits = torch.empty(unit.out_shape, dtype=torch.bool, device=x.device)
    _forward_scan[grid(n)](
        *unit_inputs(unit), spikes, bits, spikes, unit.T, n, C, L,
        *constants(cfg), AFFINE=True, RESIDUAL=unit.residual is not None, STATIC=unit.static,
        SPIKES=True, BITS=True, KEEP=False, BLOCK=BLOCK, **neuron_meta(cfg), **EXACT,
    )  # fmt: skip
    return spikes, bits


def norm_backward(grad_spikes: torch.Tensor, unit: NormDrive, cfg: NeuronConfig) -> torch.Tensor:
    """``dL/dy`` shaped as ``x`` (summed over T when static): the membrane recomputed by the
    forward's kernel into a ``[T, N]`` buffer, then the reverse scan over it (in place, unless
    static: then summed into ``[N]``)."""
    n, C, L = unit_layout(unit)
    x, T = unit.x, unit.T
    buffer = x.new_empty((T, n))
    _forward_scan[grid(n)](
        *unit_inputs(unit), buffer, buffer, buffer, T, n, C, L, *constants(cfg),
        AFFINE=True, RESIDUAL=unit.residual is not None, STATIC=unit.static,
        SPIKES=False, BITS=False, KEEP=True, BLOCK=BLOCK, **neuron_meta(cfg), **EXACT,
    )  # fmt: skip
    grad = x.new_empty(n) if unit.static else buffer
    _backward_scan[grid(n)](
        grad_spikes, buffer, grad, T, n, *constants(cfg), cfg.alpha,
        SUM=unit.static, BLOCK=BLOCK, **gradient_meta(cfg), **EXACT,
    )  # fmt: skip
    return grad.view(x.shape)


@triton.jit
def _loop_probe(out_ptr, T, BLOCK: tl.constexpr):
    total = tl.zeros([BLOCK], dtype=tl.float32)
    for _ in range(T):
        total += 1.0
    tl.store(out_ptr + tl.arange(0, BLOCK), total)


def interpreter_fault() -> str | None:
    """Why Triton's interpreter cannot run these kernels, or ``None``: they loop over a runtime
    ``T``, which Triton 3.6's interpreter cannot do under numpy >= 2.4."""
    out = torch.zeros(2)
    try:
        _loop_probe[(1,)](out, 3, BLOCK=2)
    except Exception as error:  # the interpreter's own, whatever it raises
        return (
            f"Triton {triton.__version__}'s interpreter cannot loop over a runtime bound here "
            f"({type(error).__name__}: {error}); with Triton 3.6 that is numpy >= 2.4: "
            "install numpy<2.4 (or a newer triton)"
        )
    return None if out.tolist() == [3.0, 3.0] else f"the interpreter counted {out.tolist()}"
