r"""Triton kernels of the multi-step LIF scans (``recurrence``'s charge, fire, reset), one
program per block of neurons looping over T. Imported only by the ``triton`` backend; on a CPU
they run under Triton's interpreter (``TRITON_INTERPRET=1``, set before this import).

Forward, per neuron: ``v_t = k x_t + decay u_{t-1}``, ``s_t = 1[v_t >= th]``, ``u_t`` reset
hard (``v_t - v_t s_t``) or soft (``v_t - th s_t``). Backward (``reference.lif_backward``):
``g_t = ds_t sg_t + c_t g_{t+1}`` with ``c_t`` per reset mode, then ``dL/dx_t = k g_t``.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ..config import NeuronConfig
from .recurrence import input_gain

BLOCK = 256
#: surrogate name -> the kernels' compile-time id
SURROGATE_IDS = {"triangle": 0, "sigmoid": 1, "atan": 2, "rectangle": 3}


@triton.jit
def _surrogate(x, alpha, KIND: tl.constexpr):
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
def _lif_forward(x_ptr, s_ptr, v_ptr, T, N, gain, decay, threshold,
                 HARD: tl.constexpr, GAIN: tl.constexpr, KEEP: tl.constexpr,
                 BLOCK: tl.constexpr):  # fmt: skip
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    u = tl.zeros([BLOCK], dtype=tl.float32)
    for t in range(T):
        x = tl.load(x_ptr + t * N + offs, mask=mask, other=0.0)
        if GAIN:
            x = x * gain
        v = x + decay * u  # u = 0 at t = 0: v = x exactly
        s = (v >= threshold).to(tl.float32)
        tl.store(s_ptr + t * N + offs, s, mask=mask)
        if KEEP:
            tl.store(v_ptr + t * N + offs, v, mask=mask)
        u = v - v * s if HARD else v - threshold * s


@triton.jit
def _lif_backward(ds_ptr, v_ptr, g_ptr, T, N, gain, decay, threshold, alpha,
                  HARD: tl.constexpr, DETACH: tl.constexpr, GAIN: tl.constexpr,
                  SURROGATE: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    later = tl.zeros([BLOCK], dtype=tl.float32)  # g_{t+1}
    for i in range(T):
        t = T - 1 - i
        v = tl.load(v_ptr + t * N + offs, mask=mask, other=0.0)
        ds = tl.load(ds_ptr + t * N + offs, mask=mask, other=0.0)
        sg = _surrogate(v - threshold, alpha, SURROGATE)
        if HARD:
            below = (v < threshold).to(tl.float32)
            coeff = decay * below if DETACH else decay * (below - v * sg)
        else:
            coeff = decay if DETACH else decay * (1.0 - threshold * sg)
        g = ds * sg + coeff * later
        tl.store(g_ptr + t * N + offs, g * gain if GAIN else g, mask=mask)
        later = g


def _grid(n: int) -> tuple[int]:
    return (triton.cdiv(n, BLOCK),)


def lif_forward(
    x: torch.Tensor, cfg: NeuronConfig, keep_membrane: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Spikes ``[T, ...]`` and, if asked, the pre-reset membrane (float32, contiguous ``x``)."""
    T, n = x.shape[0], x[0].numel()
    spikes = torch.empty_like(x)
    membrane = torch.empty_like(x) if keep_membrane else spikes  # unused unless kept
    gain = input_gain(cfg)
    _lif_forward[_grid(n)](
        x, spikes, membrane, T, n, gain, cfg.decay, cfg.threshold,
        HARD=cfg.reset == "hard", GAIN=gain != 1.0, KEEP=keep_membrane, BLOCK=BLOCK,
    )  # fmt: skip
    return spikes, membrane if keep_membrane else None


def lif_backward(
    grad_spikes: torch.Tensor, membrane: torch.Tensor, cfg: NeuronConfig
) -> torch.Tensor:
    """``dL/dx [T, ...]`` from ``dL/ds`` and the pre-reset membrane (float32, contiguous)."""
    T, n = membrane.shape[0], membrane[0].numel()
    grad = torch.empty_like(membrane)
    gain = input_gain(cfg)
    _lif_backward[_grid(n)](
        grad_spikes, membrane, grad, T, n, gain, cfg.decay, cfg.threshold, cfg.alpha,
        HARD=cfg.reset == "hard", DETACH=cfg.detach_reset, GAIN=gain != 1.0,
        SURROGATE=SURROGATE_IDS[cfg.surrogate], BLOCK=BLOCK,
    )  # fmt: skip
    return grad
