r"""The ``compile`` neuron backend: the scans written one step at a time and compiled by
``torch.compile``. Inductor fuses each step's charge/fire/reset, or surrogate and reverse
recurrence, into one loop (C++ on a CPU, Triton on a GPU). The first call per shape compiles
(seconds)."""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable

import torch

from ..config import NeuronConfig
from ..surrogate import SURROGATES
from .base import LIFBackend
from .record import count_dtype
from .recurrence import charge, fire, input_gain, reset
from .reference import with_bits
from .spike_pack import BITS
from .unit import NormDrive


def _lif_scan(drives: list, cfg: NeuronConfig, spikes=None) -> tuple[list, list]:
    """``recurrence``'s charge, fire and reset over the per-step inputs ``drives``: the
    pre-reset membranes ``v_t`` and the 0/1 spikes ``s_t`` (float), written out step by step
    (Inductor unrolls the loop and fuses it). ``spikes``, when given, decide the resets (a
    recompute that follows its forward exactly)."""
    vs, ss, u = [], [], None
    for t, y in enumerate(drives):
        v = charge(y, u, cfg)
        s = fire(v, cfg) if spikes is None else spikes[t].to(v.dtype)
        vs.append(v)
        ss.append(s)
        u = reset(v, s, cfg)
    return vs, ss


def _membrane_scan(x: torch.Tensor, cfg: NeuronConfig) -> torch.Tensor:
    """Pre-reset membrane ``v [T, ...]`` of the LIF driven by ``x [T, ...]``."""
    return torch.stack(_lif_scan([x[t] for t in range(x.shape[0])], cfg)[0])


def _gradient_scan(
    grad_spikes: torch.Tensor,
    v: torch.Tensor,
    cfg: NeuronConfig,
    spikes: torch.Tensor | None = None,
) -> torch.Tensor:
    """``dL/dx`` by the reverse recurrence of ``lif_backward``, one step at a time; ``v`` is
    ``[T, ...]`` or a list of steps. ``spikes`` (0/1), when given, decide the resets instead of
    ``v >= threshold``."""
    surrogate = SURROGATES.get(cfg.surrogate)
    grads: list[torch.Tensor] = []
    later = None  # g_{t+1}
    for t in range(len(v) - 1, -1, -1):
        sg = surrogate(v[t] - cfg.threshold, cfg.alpha)
        g = grad_spikes[t] * sg
        if later is not None:
            if cfg.reset == "soft":
                du_dv = 1.0 if cfg.detach_reset else 1.0 - cfg.threshold * sg
            else:
                fired = v[t] >= cfg.threshold if spikes is None else spikes[t] != 0
                not_fired = (~fired).to(v[t].dtype)
                du_dv = not_fired if cfg.detach_reset else not_fired - sg * v[t]
            g = g + cfg.decay * du_dv * later
        grads.append(g)
        later = g
    grad = torch.stack(grads[::-1])
    return grad * (1.0 - cfg.decay) if cfg.decay_input else grad


def _norm_drives(x, scale, shift, residual, T: int, static: bool) -> list:
    """Per-step neuron inputs ``y_t = x_t scale + shift [+ r_t]`` on ``[T?, rows, C, L]`` views."""
    ys = [(x if static else x[t]) * scale + shift for t in range(T)]
    return ys if residual is None else [y + residual[t] for t, y in enumerate(ys)]


def _norm_spike_scan(x, scale, shift, residual=None, *, cfg: NeuronConfig, T: int, static: bool):
    """Spikes ``[T, rows, C, L]`` of the LIF driven by ``_norm_drives`` (no membrane stored)."""
    return torch.stack(_lif_scan(_norm_drives(x, scale, shift, residual, T, static), cfg)[1])


def _norm_gradient_scan(grad_spikes, spikes, x, scale, shift, residual=None, *, cfg, T, static):
    """``dL/dy``: the membrane recomputed along the forward's ``spikes``, then the reverse
    recurrence (summed over steps for a static drive)."""
    drives = _norm_drives(x, scale, shift, residual, T, static)
    vs, _ = _lif_scan(drives, cfg, spikes)
    grad = _gradient_scan(grad_spikes, vs, cfg, spikes)
    return grad.sum(0) if static else grad


def _record_scan(x, scale, shift, residual=None, *, cfg: NeuronConfig, T: int, static: bool):
    """Rate-BP's spike pass of a BatchNorm-driven LIF in one scan: ``(packed spikes
    [ceil(T/8), rows, C, L] uint8, counts, T * eligibility)``, the recursions of ``record``."""
    surrogate = SURROGATES.get(cfg.surrogate)
    c = input_gain(cfg)
    vs, ss = _lif_scan(_norm_drives(x, scale, shift, residual, T, static), cfg)
    elig, eps = 0.0, c
    for t, (v, s) in enumerate(zip(vs, ss, strict=True)):
        sg = surrogate(v - cfg.threshold, cfg.alpha)
        elig = elig + eps * sg
        if cfg.reset == "soft":
            rho = 1.0 if cfg.detach_reset else 1.0 - cfg.threshold * sg
        else:
            rho = 1.0 - s if cfg.detach_reset else 1.0 - s - v * sg
        if t + 1 < T:
            eps = c + cfg.decay * rho * eps
    bytes_ = [  # 8 steps per byte (spike_pack): bit b of byte j is step 8 j + b
        sum(ss[t] * (1 << (t % BITS)) for t in range(j, min(T, j + BITS))).to(torch.uint8)
        for j in range(0, T, BITS)
    ]
    return torch.stack(bytes_), sum(ss[1:], ss[0]), elig


@functools.cache
def _compiled(fn: Callable, **constants) -> Callable:
    """``fn`` compiled with ``constants`` (the neuron config, ``T``, ...) bound as closure
    constants, which Dynamo guards far more cheaply than a dataclass argument. One kernel per
    (fn, constants) and a few size classes: the scans see a dynamic batch and layer size, so
    every layer shares them, and unroll the loop over T."""
    import torch._dynamo

    # many T and configs in one process (benchmarks, sweeps) must not hit Dynamo's default
    # limit of 8, past which it silently runs eager
    key = (
        "recompile_limit"
        if hasattr(torch._dynamo.config, "recompile_limit")
        else "cache_size_limit"
    )
    setattr(torch._dynamo.config, key, max(getattr(torch._dynamo.config, key), 64))

    def bound(*tensors):
        return fn(*tensors, **constants)

    return torch.compile(bound, dynamic=True, options=_exact_options())


def _exact_options() -> dict[str, bool]:
    """Inductor options that keep every product and sum rounded on its own (``recurrence``):
    on GPUs Inductor launches its Triton with ``enable_fp_fusion = not
    emulate_precision_casts``, so fused multiply-adds would flip spikes at the threshold.
    (Its C++ on CPUs does not contract; an older torch without the option compiles as is.)"""
    import torch._inductor.config as inductor

    return {"emulate_precision_casts": True} if hasattr(inductor, "emulate_precision_casts") else {}


def _per_channel_views(unit: NormDrive) -> tuple:
    """``(x, scale, shift, residual)`` viewed per channel: ``[T?, rows, C, L]``, ``[C, 1]``."""
    x, T, static = unit.x, unit.T, unit.static
    rows = x.shape[0] if static else x.shape[0] // T
    lead = (rows,) if static else (T, rows)
    x = x.view(*lead, x.shape[1], -1)
    residual = None if unit.residual is None else unit.residual.reshape(T, rows, *x.shape[-2:])
    return x, unit.scale.view(-1, 1), unit.shift.view(-1, 1), residual


#: neuron-steps per call of the compiled record scan: Inductor keeps a float buffer per
#: unrolled step, so a layer is scanned a few rows at a time to keep them small
RECORD_CHUNK = 1 << 19


def _compiled_norm_record(unit: NormDrive, cfg: NeuronConfig):
    x, T, static = unit.x, unit.T, unit.static
    shape = x.shape if static else (x.shape[0] // T, *x.shape[1:])
    x, scale, shift, residual = _per_channel_views(unit)
    scan = _compiled(_record_scan, cfg=cfg, T=T, static=static)
    rows, neurons = shape[0], x.shape[-2] * x.shape[-1]
    per_call = max(1, RECORD_CHUNK // (T * neurons))
    out = None
    for start in range(0, rows, per_call):
        part = slice(start, start + per_call)
        args = (x[part] if static else x[:, part], scale, shift)
        if residual is not None:
            args += (residual[:, part],)
        spikes, counts, elig = scan(*args)
        if per_call >= rows:
            out = (spikes, counts.to(count_dtype(T)), elig)
            break
        if out is None:
            out = (
                spikes.new_empty((spikes.shape[0], rows, *spikes.shape[2:])),
                counts.new_empty((rows, *counts.shape[1:]), dtype=count_dtype(T)),
                elig.new_empty((rows, *elig.shape[1:])),
            )
        out[0][:, part], out[1][part], out[2][part] = spikes, counts, elig
    spikes, counts, elig = out
    return spikes.view(-1, *shape), counts.view(shape), elig.div_(T).view(shape)


class CompiledBackend(LIFBackend):
    """The scans written one step at a time and compiled by ``torch.compile``."""

    def unavailable(self, device: torch.device) -> str | None:
        if device.type == "cuda":
            try:
                import triton  # noqa: F401
            except ImportError:
                return "torch.compile on CUDA needs Triton, which is not installed"
            return None
        if device.type == "cpu":
            return None if shutil.which("c++") or shutil.which("g++") else "no C++ compiler on PATH"
        return f"not set up for {device.type} devices"

    def forward(self, x: torch.Tensor, cfg: NeuronConfig, keep_membrane: bool):
        membrane = _compiled(_membrane_scan, cfg=cfg)(x.reshape(x.shape[0], -1)).view(x.shape)
        if torch.compiler.is_compiling():  # inside a compiled model: saved, so not a view
            membrane = membrane.clone()
        return (membrane >= cfg.threshold).to(x.dtype), membrane if keep_membrane else None

    def backward(self, grad_spikes: torch.Tensor, membrane: torch.Tensor, cfg: NeuronConfig):
        T = membrane.shape[0]
        scan = _compiled(_gradient_scan, cfg=cfg)
        return scan(grad_spikes.reshape(T, -1), membrane.reshape(T, -1)).view(membrane.shape)

    def norm_forward(self, drive: NormDrive, cfg: NeuronConfig):
        x, scale, shift, residual = _per_channel_views(drive)
        scan = _compiled(_norm_spike_scan, cfg=cfg, T=drive.T, static=drive.static)
        spikes = scan(x, scale, shift) if residual is None else scan(x, scale, shift, residual)
        return with_bits(spikes, drive)

    def norm_backward(self, grad_spikes, spikes, drive: NormDrive, cfg: NeuronConfig):
        T, static = drive.T, drive.static
        x, scale, shift, residual = _per_channel_views(drive)
        shape = (T, *(x.shape if static else x.shape[1:]))
        scan = _compiled(_norm_gradient_scan, cfg=cfg, T=T, static=static)
        args = (grad_spikes.reshape(shape), spikes.reshape(shape), x, scale, shift)
        return scan(*args) if residual is None else scan(*args, residual)

    def norm_record(self, drive: NormDrive, cfg: NeuronConfig):
        return _compiled_norm_record(drive, cfg)
