"""``triton``: hand-written Triton kernels of the LIF scans (``triton_kernels``,
``triton_unit_kernels``).

On CUDA when ``triton`` imports; on a CPU only under Triton's interpreter
(``TRITON_INTERPRET=1``), which is how the tests check the kernels without a GPU. The kernels
take float32 contiguous tensors of fewer than 2^31 elements (int32 offsets) and cover every
scan: the plain neuron's forward and backward; the BatchNorm + LIF unit's forward, ``dL/dy``,
batch statistics and Rate-BP's record scan. The unit's whole backward is the Triton ``dL/dy``
followed by ATen's BatchNorm backward (the inherited composite). Anything else (other dtypes, a
gradient of another dtype, larger tensors) falls back to the reference, which gives the same
results. ``norm_record`` leaves ``x`` as it was (see ``triton_unit_kernels.norm_record``).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from types import ModuleType

import torch

from ..config import NeuronConfig
from .base import LIFBackend
from .unit import NormDrive

#: the kernels index with int32: larger tensors (and empty ones) take the reference
MAX_NUMEL = 2**31 - 1


def _kernels() -> ModuleType:
    from . import triton_kernels  # imports triton: only when the backend is used

    return triton_kernels


def _unit_kernels() -> ModuleType:
    from . import triton_unit_kernels

    return triton_unit_kernels


def _fits(*tensors: torch.Tensor | None) -> bool:
    """Whether the kernels take these tensors (``None``: absent, fine)."""
    return all(
        t is None or (t.dtype == torch.float32 and t.is_contiguous() and 0 < t.numel() <= MAX_NUMEL)
        for t in tensors
    )


def _unit_fits(drive: NormDrive, *tensors: torch.Tensor | None) -> bool:
    """``_fits`` for a unit's drive and ``tensors``: the output (every step of a static drive)
    counts toward the size; a float32 residual of any layout is made contiguous."""
    residual, steps = drive.residual, drive.T if drive.static else 1
    return (
        _fits(drive.x, drive.scale, drive.shift, *tensors)
        and drive.x.numel() * steps <= MAX_NUMEL
        and (residual is None or residual.dtype == torch.float32)
    )


@functools.cache
def _interpreter_fault() -> str | None:
    return _kernels().interpreter_fault()


class TritonBackend(LIFBackend):
    def unavailable(self, device: torch.device) -> str | None:
        if importlib.util.find_spec("triton") is None:
            return "the triton package is not installed"
        if device.type == "cuda":
            return None
        if device.type == "cpu" and os.environ.get("TRITON_INTERPRET"):
            return _interpreter_fault()  # the interpreter runs on numpy: a tiny loop, once
        return "Triton kernels run on CUDA devices (on a CPU only with TRITON_INTERPRET=1)"

    def forward(self, x: torch.Tensor, cfg: NeuronConfig, keep_membrane: bool):
        if not _fits(x):
            return super().forward(x, cfg, keep_membrane)
        return _kernels().lif_forward(x, cfg, keep_membrane)

    def backward(self, grad_spikes: torch.Tensor, membrane: torch.Tensor, cfg: NeuronConfig):
        grad_spikes = grad_spikes.contiguous()
        if not _fits(membrane, grad_spikes):
            return super().backward(grad_spikes, membrane, cfg)
        return _kernels().lif_backward(grad_spikes, membrane, cfg)

    def norm_forward(self, drive: NormDrive, cfg: NeuronConfig):
        if not _unit_fits(drive):
            return super().norm_forward(drive, cfg)
        return _kernels().norm_forward(drive, cfg)

    def norm_backward(self, grad_spikes, spikes, drive: NormDrive, cfg: NeuronConfig):
        """``dL/dy`` shaped as ``x``; the membrane is recomputed (``spikes`` are not read)."""
        grad_spikes = grad_spikes.contiguous()
        if not _unit_fits(drive, grad_spikes):
            return super().norm_backward(grad_spikes, spikes, drive, cfg).view(drive.x.shape)
        return _kernels().norm_backward(grad_spikes, drive, cfg)

    def norm_record(self, drive: NormDrive, cfg: NeuronConfig):
        if not _unit_fits(drive):
            return super().norm_record(drive, cfg)
        return _unit_kernels().norm_record(drive, cfg)

    def batch_stats(self, x, running_mean, running_var, momentum: float, eps: float):
        if not _fits(x, running_mean, running_var):
            return super().batch_stats(x, running_mean, running_var, momentum, eps)
        return _unit_kernels().batch_stats(x, running_mean, running_var, momentum, eps)
