r"""Triton kernels of a BatchNorm + LIF unit beyond its scans (``triton_kernels``): the batch
statistics of its BatchNorm and Rate-BP's record scan, on the same helpers and rounding.

Batch statistics of ``x [rows, C, L]``, per channel ``c`` over its ``n = rows L`` values, in
two kernels: ``(C, splits)`` programs sum ``d = x - x[0, c, 0]`` and ``d^2`` over a slice each
(float64; the shift keeps a large mean from cancelling the variance), then one program per
channel adds the slices up:

    mean = x[0, c, 0] + S1 / n,   var = S2 / n - (S1 / n)^2 (biased),   invstd = (var + eps)^-1/2
    running_mean <- m mean + (1 - m) running_mean,
    running_var  <- m var n / (n - 1) + (1 - m) running_var        (as ATen, momentum m)

Record scan (``record``'s recursion), per neuron along the forward scan: the spikes packed 8
steps per byte (bit ``t % 8`` of byte ``t // 8``), the count ``n = sum_t s_t`` and

    e = (1/T) sum_t eps_t sg(v_t - th),   eps_0 = k,   eps_{t+1} = k + decay du_t/dv_t eps_t.

It reads ``x`` and writes only its outputs: ``x`` is left as it was (see ``norm_record``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..config import NeuronConfig
from .record import count_dtype
from .spike_pack import BITS
from .triton_kernels import (
    BLOCK,
    EXACT,
    channel_affine,
    charge,
    constants,
    drive,
    gradient_meta,
    grid,
    reset,
    reset_slope,
    surrogate,
    unit_inputs,
    unit_layout,
)
from .unit import NormDrive

#: values per program and loop step of the statistics' sums; a channel is split in at most
#: ``MAX_SPLITS`` slices (programs)
STATS_BLOCK = 512
MAX_SPLITS = 64


@triton.jit
def _record_scan(x_ptr, scale_ptr, shift_ptr, r_ptr, packed_ptr, count_ptr, elig_ptr,
                 T, N, C, L, gain, decay, threshold, alpha,
                 RESIDUAL: tl.constexpr, STATIC: tl.constexpr, HARD: tl.constexpr,
                 DETACH: tl.constexpr, GAIN: tl.constexpr, SURROGATE: tl.constexpr,
                 BITS: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """Packed spikes ``[ceil(T/8), N]``, counts ``[N]`` (in the dtype of ``count``) and
    eligibility ``[N]`` of ``N`` neurons driven by ``drive`` (see the module docstring)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    scale, shift = channel_affine(scale_ptr, shift_ptr, offs, mask, C, L)
    u = tl.zeros([BLOCK], dtype=tl.float32)
    eps = tl.zeros([BLOCK], dtype=tl.float32) + gain
    elig = tl.zeros([BLOCK], dtype=tl.float32)
    count = tl.zeros([BLOCK], dtype=tl.int32)
    byte = tl.zeros([BLOCK], dtype=tl.int32)
    for t in range(T):
        step = t * N
        x_t = x_ptr if STATIC else x_ptr + step
        v = charge(drive(x_t, r_ptr + step, offs, mask, scale, shift, True, RESIDUAL),
                   u, gain, decay, GAIN)  # fmt: skip
        fired = (v >= threshold).to(tl.int32)
        s = fired.to(tl.float32)
        count += fired
        byte = byte | (fired << (t % BITS))
        if (t % BITS == BITS - 1) | (t == T - 1):  # the byte's last step
            tl.store(packed_ptr + (t // BITS) * N + offs, byte.to(tl.uint8), mask=mask)
            byte = tl.zeros([BLOCK], dtype=tl.int32)
        sg = surrogate(v - threshold, alpha, SURROGATE)
        elig += eps * sg
        eps = gain + decay * reset_slope(v, s, sg, threshold, HARD, DETACH) * eps
        u = reset(v, s, threshold, HARD)
    tl.store(count_ptr + offs, count.to(count_ptr.dtype.element_ty), mask=mask)
    tl.store(elig_ptr + offs, elig / T, mask=mask)


@triton.jit
def _channel_sums(x_ptr, sums_ptr, C, L, n, chunk, BLOCK: tl.constexpr):
    """Program ``(c, p)``: ``(sum d, sum d^2)`` of channel ``c``'s values ``p chunk ..
    (p + 1) chunk - 1`` (value ``j`` at row ``j // L``, place ``j % L``) into ``sums[c, p]``."""
    c, p = tl.program_id(0), tl.program_id(1)
    first = tl.load(x_ptr + c * L).to(tl.float64)
    s1 = tl.zeros([BLOCK], dtype=tl.float64)
    s2 = tl.zeros([BLOCK], dtype=tl.float64)
    for start in range(p * chunk, tl.minimum(n, (p + 1) * chunk), BLOCK):
        j = start + tl.arange(0, BLOCK)
        inside = j < n
        x = tl.load(x_ptr + (j // L) * (C * L) + c * L + j % L, mask=inside, other=0.0)
        d = tl.where(inside, x.to(tl.float64) - first, 0.0)
        s1 += d
        s2 += d * d
    out = sums_ptr + (c * tl.num_programs(1) + p) * 2
    tl.store(out, tl.sum(s1))
    tl.store(out + 1, tl.sum(s2))


@triton.jit
def _channel_stats(x_ptr, sums_ptr, mean_ptr, invstd_ptr, rmean_ptr, rvar_ptr,
                   L, n, splits, momentum, eps,
                   RUNNING: tl.constexpr, SPLITS: tl.constexpr):  # fmt: skip
    """Program ``c``: channel ``c``'s slices added up into ``mean``, ``invstd`` and, when
    ``RUNNING``, the running statistics (see the module docstring)."""
    c = tl.program_id(0)
    i = tl.arange(0, SPLITS)
    inside = i < splits
    s1 = tl.sum(tl.load(sums_ptr + (c * splits + i) * 2, mask=inside, other=0.0))
    s2 = tl.sum(tl.load(sums_ptr + (c * splits + i) * 2 + 1, mask=inside, other=0.0))
    shifted = s1 / n
    mean = tl.load(x_ptr + c * L).to(tl.float64) + shifted
    var = tl.maximum(s2 / n - shifted * shifted, 0.0)
    tl.store(mean_ptr + c, mean.to(tl.float32))
    tl.store(invstd_ptr + c, (1.0 / tl.sqrt(var + eps)).to(tl.float32))
    if RUNNING:
        keep = 1.0 - momentum
        old_mean = tl.load(rmean_ptr + c).to(tl.float64)
        tl.store(rmean_ptr + c, (momentum * mean + keep * old_mean).to(tl.float32))
        unbiased = var * n / (n - 1)
        old_var = tl.load(rvar_ptr + c).to(tl.float64)
        tl.store(rvar_ptr + c, (momentum * unbiased + keep * old_var).to(tl.float32))


def norm_record(
    unit: NormDrive, cfg: NeuronConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rate-BP's spike pass of the unit: packed spikes ``uint8 [ceil(T/8), rows, C, ...]``,
    counts (``record.count_dtype(T)``) and eligibility ``[rows, C, ...]``.

    Unlike the reference, ``x`` is left as it was, not normalised in place: the reference's
    in-place writes only save a buffer (it leaves ``x`` holding the drive, or for a non-static
    drive the last membranes), and its callers (``ratebp.units.UnitRecorder``) pass a fresh
    buffer that they drop unread after the call."""
    n, C, L = unit_layout(unit)
    x, T = unit.x, unit.T
    step_shape = x.shape if unit.static else (x.shape[0] // T, *x.shape[1:])
    packed = torch.empty((-(-T // BITS), n), dtype=torch.uint8, device=x.device)
    counts = torch.empty(n, dtype=count_dtype(T), device=x.device)
    elig = x.new_empty(n)
    _record_scan[grid(n)](
        *unit_inputs(unit), packed, counts, elig, T, n, C, L, *constants(cfg), cfg.alpha,
        RESIDUAL=unit.residual is not None, STATIC=unit.static, BITS=BITS, BLOCK=BLOCK,
        **gradient_meta(cfg), **EXACT,
    )  # fmt: skip
    return packed.view(-1, *step_shape), counts.view(step_shape), elig.view(step_shape)


def batch_stats(
    x: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    momentum: float,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, invstd)`` per channel of ``x [rows, C, ...]`` (float32, contiguous), the running
    statistics (when given, float32) updated in place."""
    C = x.shape[1]
    L, n = x[0, 0].numel(), x.numel() // C
    chunk = STATS_BLOCK * triton.cdiv(triton.cdiv(n, STATS_BLOCK), MAX_SPLITS)
    splits = triton.cdiv(n, chunk)
    sums = torch.empty((C, splits, 2), dtype=torch.float64, device=x.device)
    _channel_sums[(C, splits)](x, sums, C, L, n, chunk, BLOCK=STATS_BLOCK, **EXACT)
    mean, invstd = x.new_empty(C), x.new_empty(C)
    running = running_mean is not None
    _channel_stats[(C,)](
        x, sums, mean, invstd, running_mean if running else mean,
        running_var if running else invstd, L, n, splits, momentum, eps,
        RUNNING=running, SPLITS=triton.next_power_of_2(splits), **EXACT,
    )  # fmt: skip
    return mean, invstd
