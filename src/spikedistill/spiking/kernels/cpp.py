r"""The ``cpp`` neuron backend: ``lif_cpp.cpp``'s scans, built when the backend is first chosen.

The C++ loops run the recurrences of ``reference`` in one pass over memory per scan, with
the call cost of an ATen op (a few µs) instead of a compiled graph's (about 50 µs on a CPU),
which is what a small layer at small ``T`` pays most for. The BatchNorm-driven forward also
writes the ``bool`` spikes that ``norm_lif`` saves, in the same pass.

The extension is compiled by ``torch.utils.cpp_extension`` when the backend is first chosen
(``set_backend``, or the first forward of a neuron set to it or to ``auto`` on a CPU), once per
machine (about 20 s; cached under ``TORCH_EXTENSIONS_DIR``, rebuilt when the source
changes). It needs a C++ compiler and ninja. The kernels take float32 and float64 CPU tensors;
other dtypes (bf16 under autocast) run the ``torch`` reference, as does Rate-BP's spike pass
(``norm_record``), which has no C++ kernel yet.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import sys
from pathlib import Path

import torch

from ...errors import ConfigError
from ..config import NeuronConfig
from .base import LIFBackend
from .recurrence import input_gain
from .unit import BatchStats, NormDrive, UnitGrads

SOURCE = Path(__file__).with_name("lif_cpp.cpp")
NAME = "spikedistill_lif_cpp"
#: surrogate name -> the id the C++ code dispatches on (a new surrogate needs a C++ twin)
SURROGATE_IDS = {"triangle": 0, "sigmoid": 1, "atan": 2, "rectangle": 3}
DTYPES = (torch.float32, torch.float64)


@functools.cache
def missing_tools() -> str | None:
    """What the build lacks, asked once per process (it runs ``ninja --version``). The PyPI
    ``ninja`` (a dependency) goes first on ``PATH``: outside an activated virtual environment
    its binary is not there, and a system ninja of another version would find the cached
    build's log in a format it rewrites, so the kernels would rebuild (about 20 s) whenever
    the two alternate."""
    if not (shutil.which("c++") or shutil.which("g++")):
        return "no C++ compiler on PATH"
    with contextlib.suppress(ImportError, AttributeError):
        import ninja

        path = os.environ.get("PATH", "")
        if not path.startswith(ninja.BIN_DIR + os.pathsep):
            os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, path])
    from torch.utils.cpp_extension import is_ninja_available

    return None if is_ninja_available() else "ninja is not installed (pip install ninja)"


def _built(name: str) -> bool:
    """Whether ``torch.utils.cpp_extension`` has built ``name`` on this machine before (then
    loading is quick; it still rebuilds after a change of the source)."""
    try:
        from torch.utils.cpp_extension import _get_build_directory

        return (Path(_get_build_directory(name, verbose=False)) / f"{name}.so").exists()
    except Exception:  # a private helper: if it moved, just announce the build
        return False


@functools.cache
def ops():
    """``torch.ops.spikedistill_cpp``, building the extension if this process has not."""
    from torch.utils.cpp_extension import load

    reason = missing_tools()
    if reason:
        raise ConfigError(f"cannot build the C++ neuron kernels: {reason}")
    if not _built(NAME):
        print("spikedistill: building the C++ neuron kernels (once, about 20 s)", file=sys.stderr)
    try:
        load(
            NAME,
            sources=[str(SOURCE)],
            extra_cflags=["-O3", "-ffp-contract=off", "-fopenmp"],
            extra_ldflags=["-fopenmp"],
            is_python_module=False,
        )
    except (RuntimeError, OSError) as err:  # compiler errors arrive as RuntimeError
        raise ConfigError(f"could not build the C++ neuron kernels: {err}") from err
    _register_fakes()
    return torch.ops.spikedistill_cpp


def _register_fakes() -> None:
    """Output shapes of the ops for tracing (``torch.compile`` of a model that calls them)."""

    @torch.library.register_fake("spikedistill_cpp::lif_forward")
    def _(x, scale, shift, residual, T, C, L, is_static, *constants_and_keep):
        n = x.numel() * T if is_static else x.numel()
        membrane = n if constants_and_keep[-1] else 0
        return x.new_empty(n), x.new_empty(n, dtype=torch.bool), x.new_empty(membrane)

    @torch.library.register_fake("spikedistill_cpp::lif_backward")
    def _(grad, membrane, *constants):
        return torch.empty_like(membrane)

    @torch.library.register_fake("spikedistill_cpp::norm_lif_backward")
    def _(grad, fired, x, scale, shift, residual, T, C, L, is_static, *constants):
        return x.new_empty(x.numel() if is_static else grad.numel())

    @torch.library.register_fake("spikedistill_cpp::batch_stats")
    def _(x, C, L, running_mean, running_var, momentum, eps):
        return x.new_empty(C), x.new_empty(C)

    @torch.library.register_fake("spikedistill_cpp::norm_lif_input_backward")
    def _(grad, fired, x, scale, shift, residual, weight, mean, invstd, T, C, L, is_static, *rest):
        n = x.numel() if is_static else grad.numel()
        return x.new_empty(n), x.new_empty(C), x.new_empty(C), x.new_empty(n if rest[-1] else 0)


def _ops():
    """``ops()``; while ``torch.compile`` traces, the namespace itself (built when the backend
    was selected), as Dynamo cannot trace the build check."""
    return torch.ops.spikedistill_cpp if torch.compiler.is_compiling() else ops()


def _constants(cfg: NeuronConfig) -> tuple[float, float, float, bool]:
    gain = input_gain(cfg)
    return cfg.decay, cfg.threshold, gain, cfg.reset == "hard"


def _gradient_constants(cfg: NeuronConfig) -> tuple:
    return (*_constants(cfg), cfg.detach_reset, SURROGATE_IDS[cfg.surrogate], cfg.alpha)


def _channels(x: torch.Tensor) -> tuple[int, int]:
    """``(C, L)`` of a BatchNorm input ``[rows, C, ...]``: channels, neurons per channel."""
    return x.shape[1], math.prod(x.shape[2:])


def _unit_args(unit: NormDrive) -> tuple:
    """``(x, scale, shift, residual, T, C, L, static)`` as the C++ unit kernels take them."""
    residual = None if unit.residual is None else unit.residual.contiguous()
    return (unit.x, unit.scale, unit.shift, residual, unit.T, *_channels(unit.x), unit.static)


class CppBackend(LIFBackend):
    """``lif_cpp.cpp``'s kernels for float32/float64 CPU tensors; the reference for the rest
    and for Rate-BP's spike pass (``norm_record``), which has no C++ kernel yet."""

    def unavailable(self, device: torch.device) -> str | None:
        if device.type != "cpu":
            return f"the C++ kernels run on CPU tensors only, not {device.type}"
        return missing_tools()

    def prepare(self) -> None:
        ops()

    def forward(self, x: torch.Tensor, cfg: NeuronConfig, keep_membrane: bool):
        if x.dtype not in DTYPES:
            return super().forward(x, cfg, keep_membrane)
        T = x.shape[0]
        spikes, _, membrane = _ops().lif_forward(
            x.contiguous(), None, None, None, T, 1, 1, False, *_constants(cfg), keep_membrane
        )
        return spikes.view(x.shape), membrane.view(x.shape) if keep_membrane else None

    def backward(self, grad_spikes: torch.Tensor, membrane: torch.Tensor, cfg: NeuronConfig):
        if membrane.dtype not in DTYPES:
            return super().backward(grad_spikes, membrane, cfg)
        T, constants = membrane.shape[0], _gradient_constants(cfg)
        grad = _ops().lif_backward(grad_spikes.contiguous(), membrane.contiguous(), T, *constants)
        return grad.view(membrane.shape)

    def norm_forward(self, drive: NormDrive, cfg: NeuronConfig):
        """Writes the float and the ``bool`` spikes in one pass."""
        if drive.x.dtype not in DTYPES:
            return super().norm_forward(drive, cfg)
        spikes, bits, _ = _ops().lif_forward(*_unit_args(drive), *_constants(cfg), False)
        return spikes.view(drive.out_shape), bits.view(drive.out_shape)

    def norm_backward(self, grad_spikes, spikes, drive: NormDrive, cfg: NeuronConfig):
        x = drive.x
        if x.dtype not in DTYPES:
            return super().norm_backward(grad_spikes, spikes, drive, cfg).view(x.shape)
        grad = _ops().norm_lif_backward(
            grad_spikes, spikes, *_unit_args(drive), *_gradient_constants(cfg)
        )
        return grad.view(x.shape)

    def batch_stats(self, x, running_mean, running_var, momentum: float, eps: float):
        """The statistics in double-precision shifted sums, one parallel pass."""
        if x.dtype not in DTYPES:
            mean, var = torch.var_mean(x, [0, *range(2, x.dim())], correction=0)
            if running_mean is not None:
                torch.batch_norm_update_stats(x, running_mean, running_var, momentum)
            return mean, torch.rsqrt(var + eps)
        C, L = _channels(x)
        return _ops().batch_stats(x, C, L, running_mean, running_var, momentum, eps)

    def norm_input_backward(
        self, grad_spikes, spikes, drive: NormDrive, stats: BatchStats, cfg: NeuronConfig, needs
    ) -> UnitGrads:
        """The LIF and the BatchNorm backward in one call."""
        if drive.x.dtype not in DTYPES:
            return super().norm_input_backward(grad_spikes, spikes, drive, stats, cfg, needs)
        args = _unit_args(drive)
        tensors, sizes = args[:4], args[4:]
        grads = _ops().norm_lif_input_backward(
            grad_spikes, spikes, *tensors, stats.weight, stats.mean, stats.invstd, *sizes,
            *_gradient_constants(cfg), needs[3],
        )  # fmt: skip
        residual = drive.residual
        shapes = (drive.x.shape, None, None, None if residual is None else residual.shape)
        return tuple(
            (g if shape is None else g.view(shape)) if need else None
            for g, shape, need in zip(grads, shapes, needs, strict=True)
        )
