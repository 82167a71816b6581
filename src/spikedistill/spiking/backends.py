r"""Compute backends of the multi-step LIF: the kernels behind ``MultiStepLIF``.

A backend supplies the forward scan ``(x [T, ...], cfg, keep_membrane) -> (spikes, membrane)``
and the backward scan ``(dL/ds, membrane, cfg) -> dL/dx`` of ``lif_function``'s recurrences, the
same two for a LIF driven by a BatchNorm (``norm_lif``): ``norm_forward(x, scale, shift,
residual, cfg, T, static) -> (spikes, bool spikes)`` (both ``[T*rows, C, ...]``) and
``norm_backward(dL/ds, spikes, x, scale, shift, residual, cfg, T, static) -> dL/dy``, which
recomputes the membrane instead of reading it, and
Rate-BP's spike pass of such a unit, ``norm_record(x, scale, shift, residual, cfg, T, static)
-> (packed spikes, spike counts, eligibility)`` (``rate_stats``, ``spike_pack``).
Backends change speed, not results: spikes are identical and gradients equal up to float
rounding (tests check every backend against ``torch``).

- ``torch``: the pure-PyTorch reference (``lif_forward`` / ``lif_backward``), a few full-size
  ops per step;
- ``compile``: the same scans written one step at a time and compiled by ``torch.compile``
  (Inductor fuses each step's charge/fire/reset, or surrogate and reverse recurrence, into one
  loop: C++ on a CPU, Triton on a GPU). The first call per shape compiles (seconds);
- ``cpp``: hand-written C++ loops (``lif_cpp``), CPU only: one pass and one cheap call per scan,
  and the BatchNorm statistics and backward of a BatchNorm + LIF unit in the same calls. The
  extension builds once per machine (about 20 s).

The backend is chosen per run (``train.neuron_backend``, ``spikedistill bench --backend``), never
by a model: ``use_backend("auto" | name, device)`` picks and says why when it falls back.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..registry import Registry
from . import lif_cpp
from .config import NeuronConfig
from .lif_function import (
    lif_backward,
    lif_forward,
    norm_lif_backward,
    norm_lif_forward,
    with_bits,
)
from .rate_stats import count_dtype, norm_spike_statistics
from .spike_pack import BITS
from .surrogate import SURROGATES


@dataclass(frozen=True)
class LIFBackend:
    """The forward and backward scans (plain and BatchNorm-driven), ``unavailable(device)``:
    why the backend cannot run on ``device`` (``None`` when it can), and ``prepare()``, which
    builds what the first call would (``None``: nothing to build; it may raise
    ``ConfigError``)."""

    forward: Callable[[torch.Tensor, NeuronConfig, bool], tuple[torch.Tensor, torch.Tensor | None]]
    backward: Callable[[torch.Tensor, torch.Tensor, NeuronConfig], torch.Tensor]
    norm_forward: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    norm_backward: Callable[..., torch.Tensor]
    norm_record: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    unavailable: Callable[[torch.device], str | None]
    prepare: Callable[[], object] | None = None
    #: optional kernels of the BatchNorm in a BatchNorm + LIF unit; ``None``: ATen's
    #: ``batch_stats(x, running_mean, running_var, momentum, eps) -> (mean, invstd)``
    batch_stats: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None
    #: ``norm_input_backward(dL/ds, spikes, x, weight, mean, invstd, scale, shift, residual,
    #: cfg, T, static, needs) -> (dL/dx, dL/dw, dL/db, dL/dr)``, ``None`` where ``needs`` (for
    #: x, w, b, r) is false
    norm_input_backward: Callable[..., tuple] | None = None


LIF_BACKENDS: Registry[LIFBackend] = Registry("neuron backend")
LIF_BACKENDS.register("torch")(
    LIFBackend(
        lif_forward,
        lif_backward,
        with_bits(norm_lif_forward),
        norm_lif_backward,
        norm_spike_statistics,
        lambda device: None,
    )
)


# -- compile ----------------------------------------------------------------------------------
def _lif_scan(drives: list, cfg: NeuronConfig, spikes=None) -> tuple[list, list]:
    """Charge, fire and reset over the per-step inputs ``drives``: the pre-reset membranes
    ``v_t`` and the 0/1 spikes ``s_t`` (float), written out step by step (Inductor unrolls
    the loop and fuses it). ``spikes``, when given, decide the resets (a recompute that follows
    its forward exactly)."""
    c = 1.0 - cfg.decay if cfg.decay_input else 1.0
    vs, ss, u = [], [], None
    for t, y in enumerate(drives):
        v = y * c if c != 1.0 else y
        if u is not None:
            v = v + cfg.decay * u
        s = (v >= cfg.threshold).to(v.dtype) if spikes is None else spikes[t].to(v.dtype)
        vs.append(v)
        ss.append(s)
        u = v * (1.0 - s) if cfg.reset == "hard" else v - cfg.threshold * s
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
    [ceil(T/8), rows, C, L] uint8, counts, T * eligibility)``, the recursions of ``rate_stats``."""
    surrogate = SURROGATES.get(cfg.surrogate)
    c = 1.0 - cfg.decay if cfg.decay_input else 1.0
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

    return torch.compile(bound, dynamic=True)


def _compiled_forward(x: torch.Tensor, cfg: NeuronConfig, keep_membrane: bool):
    membrane = _compiled(_membrane_scan, cfg=cfg)(x.reshape(x.shape[0], -1)).view(x.shape)
    return (membrane >= cfg.threshold).to(x.dtype), membrane if keep_membrane else None


def _compiled_backward(grad_spikes: torch.Tensor, membrane: torch.Tensor, cfg: NeuronConfig):
    T = membrane.shape[0]
    grad = _compiled(_gradient_scan, cfg=cfg)(grad_spikes.reshape(T, -1), membrane.reshape(T, -1))
    return grad.view(membrane.shape)


def _per_channel_views(x, scale, shift, residual, T: int, static: bool):
    rows = x.shape[0] if static else x.shape[0] // T
    lead = (rows,) if static else (T, rows)
    x = x.view(*lead, x.shape[1], -1)
    residual = None if residual is None else residual.reshape(T, rows, *x.shape[-2:])
    return x, scale.view(-1, 1), shift.view(-1, 1), residual


def _compiled_norm_forward(x, scale, shift, residual, cfg: NeuronConfig, T: int, static: bool):
    x, scale, shift, residual = _per_channel_views(x, scale, shift, residual, T, static)
    scan = _compiled(_norm_spike_scan, cfg=cfg, T=T, static=static)
    return scan(x, scale, shift) if residual is None else scan(x, scale, shift, residual)


def _compiled_norm_backward(grad_spikes, spikes, x, scale, shift, residual, cfg, T, static):
    x, scale, shift, residual = _per_channel_views(x, scale, shift, residual, T, static)
    shape = (T, *(x.shape if static else x.shape[1:]))
    scan = _compiled(_norm_gradient_scan, cfg=cfg, T=T, static=static)
    args = (grad_spikes.reshape(shape), spikes.reshape(shape), x, scale, shift)
    return scan(*args) if residual is None else scan(*args, residual)


#: neuron-steps per call of the compiled record scan: Inductor keeps a float buffer per
#: unrolled step, so a layer is scanned a few rows at a time to keep them small
RECORD_CHUNK = 1 << 19


def _compiled_norm_record(x, scale, shift, residual, cfg: NeuronConfig, T: int, static: bool):
    shape = x.shape if static else (x.shape[0] // T, *x.shape[1:])
    x, scale, shift, residual = _per_channel_views(x, scale, shift, residual, T, static)
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


def _compile_unavailable(device: torch.device) -> str | None:
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "torch.compile on CUDA needs Triton, which is not installed"
        return None
    if device.type == "cpu":
        return None if shutil.which("c++") or shutil.which("g++") else "no C++ compiler on PATH"
    return f"not set up for {device.type} devices"


LIF_BACKENDS.register("compile")(
    LIFBackend(
        _compiled_forward,
        _compiled_backward,
        with_bits(_compiled_norm_forward),
        _compiled_norm_backward,
        _compiled_norm_record,
        _compile_unavailable,
    )
)

LIF_BACKENDS.register("cpp")(
    LIFBackend(
        lif_cpp.forward,
        lif_cpp.backward,
        lif_cpp.norm_forward,
        lif_cpp.norm_backward,
        norm_spike_statistics,  # no C++ spike pass yet: the reference's
        lif_cpp.unavailable,
        lif_cpp.ops,
        lif_cpp.batch_stats,
        lif_cpp.norm_input_backward,
    )
)


# -- selection --------------------------------------------------------------------------------
_active = "torch"


def active_backend() -> LIFBackend:
    """The backend ``MultiStepLIF`` runs now."""
    return LIF_BACKENDS.get(_active)


#: what ``auto`` tries first, per device type (then ``torch``)
AUTO = {"cuda": "compile", "cpu": "cpp"}


def _check(name: str, device: torch.device) -> None:
    """Raise ``ConfigError`` unless ``name`` can run on ``device``; build what it needs."""
    backend = LIF_BACKENDS.get(name)
    reason = backend.unavailable(device)
    if reason:
        raise ConfigError(f"neuron backend {name!r} cannot run on {device}: {reason}")
    if backend.prepare is not None:
        backend.prepare()


def use_backend(name: str, device: torch.device | str = "cpu") -> str:
    """Make ``name`` (or ``auto``) the active backend for ``device``; returns the one chosen.

    ``auto`` takes ``compile`` on a GPU (Inductor writes Triton kernels there) and ``cpp`` on a
    CPU (compiling per layer shape takes longer than short runs save; ``spikedistill bench
    --backend`` shows the trade), else ``torch``. A named backend that cannot run on ``device``
    (or fails to build) raises ``ConfigError``; under ``auto`` the fallback is reported with
    ``warnings.warn``.
    """
    global _active
    device = torch.device(device)
    if name == "auto":
        name = AUTO.get(device.type, "torch")
        try:
            _check(name, device)
        except ConfigError as err:
            warnings.warn(f"{err}; using 'torch'", stacklevel=2)
            name = "torch"
    else:
        _check(name, device)
    _active = name
    return name


@contextlib.contextmanager
def neuron_backend(name: str, device: torch.device | str = "cpu") -> Iterator[str]:
    """``use_backend`` for the duration of a ``with`` block."""
    previous = _active
    try:
        yield use_backend(name, device)
    finally:
        use_backend(previous, device)
