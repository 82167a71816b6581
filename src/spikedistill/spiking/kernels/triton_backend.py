"""``triton``: hand-written Triton kernels of the LIF scans (``triton_kernels``).

On CUDA when ``triton`` imports; on a CPU only under Triton's interpreter
(``TRITON_INTERPRET=1``), which is how the tests check the kernels without a GPU. The kernels
cover the plain neuron's forward and backward in float32; everything else (other dtypes, the
BatchNorm + LIF unit, Rate-BP's spike pass) falls back to the reference, which gives the same
results.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType

import torch

from ..config import NeuronConfig
from .base import LIFBackend


def _kernels() -> ModuleType:
    from . import triton_kernels  # imports triton: only when the backend is used

    return triton_kernels


def _fits(*tensors: torch.Tensor) -> bool:
    return all(t.dtype == torch.float32 and t.is_contiguous() for t in tensors)


class TritonBackend(LIFBackend):
    def unavailable(self, device: torch.device) -> str | None:
        if importlib.util.find_spec("triton") is None:
            return "the triton package is not installed"
        if device.type == "cuda" or (device.type == "cpu" and os.environ.get("TRITON_INTERPRET")):
            return None
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
