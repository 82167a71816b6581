r"""Rate-BP's spike pass (``view``): the phase classes of the derived network that runs the
model over its ``T`` steps without autograd (``derive``). Every neuron emits its spikes packed 8
steps per byte and records its spike counts and eligibility (``kernels.record``), every
BatchNorm records the batch statistics it normalised with (updating its running statistics
once, as usual), and every other layer reads the packed spikes a few steps at a time
(``packed_ops``). A neuron handed a whole (convolution,) BatchNorm, LIF unit by
``conv_norm_act`` runs it with ``units.UnitRecorder``, in output-channel chunks."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..spiking.kernels.record import spike_statistics
from ..spiking.kernels.spike_pack import PackedSpikes, pack
from ..spiking.layers import FoldedNeuron, pool_is_identity, unfold_time
from ..spiking.max_pool import is_tiling_max_pool, pool_size
from ..spiking.norm_lif import UnitRunner, batch_statistics, has_hooks
from .derive import PhaseOf
from .packed_ops import FRESH, or_pool, per_step
from .rate_pass import per_channel
from .units import UnitRecorder, affine

_BatchNorm = nn.modules.batchnorm._BatchNorm
_Conv = nn.modules.conv._ConvNd
_MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool2d)
_SHAPE_ONLY = (nn.Identity, nn.Flatten, nn.Unflatten)  # fine on bool tensors as they are


class RecordNeuron(UnitRunner):
    """A ``FoldedNeuron``'s spike pass: packed spikes out, ``(counts, eligibility)`` recorded
    under the model's own neuron (``original``)."""

    original: FoldedNeuron
    records: dict
    recorder: UnitRecorder

    def forward(self, x: torch.Tensor, static: bool = False) -> torch.Tensor:
        m = self.original
        steps = x.unsqueeze(0).expand(m.T, *x.shape) if static else unfold_time(x, m.T)
        spikes, counts, elig = spike_statistics(steps, m.neuron.config)
        self.records[m] = (counts, elig)
        return PackedSpikes(spikes, m.T)

    def run_unit(self, conv, norm, x, residual, static) -> torch.Tensor | None:
        """The whole unit by the recorder when it is all the model's own, un-hooked, layers:
        a plain convolution (or none), a BatchNorm, this neuron."""
        plain_conv = conv is None or (
            isinstance(conv, RecordLeaf) and isinstance(conv, _Conv) and conv.groups == 1
        )
        modules = [norm, self, self.neuron] + ([] if conv is None else [conv])
        if not (plain_conv and isinstance(norm, RecordNorm)) or any(map(has_hooks, modules)):
            return None
        conv = None if conv is None else conv.original
        return self.recorder(conv, norm.original, self.original, x, residual, static)


class RecordNorm:
    """A train-mode BatchNorm as the class computes it, its statistics recorded, normalising
    in place when the input is a fresh layer output."""

    original: _BatchNorm
    records: dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.original
        x = x.to(m.weight.dtype if m.weight is not None else torch.get_default_dtype())
        mean, var = batch_statistics(m, x)  # biased var; running stats updated as usual
        self.records[m] = (mean, var)
        scale, shift = affine(m, mean, var)
        fresh = getattr(x, FRESH, False)
        out = x.mul_(per_channel(scale, x)) if fresh else x * per_channel(scale, x)
        return out.add_(per_channel(shift, x))


class RecordLeaf:
    """A stateless layer on spikes (``bool``, or packed): a tiling max-pool as their OR, other
    max-pools on the bytes, anything else one time step at a time as ``dtype``."""

    original: nn.Module
    T: int
    dtype: torch.dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, T = self.original, self.T
        cls_forward = type(m).forward
        packed = isinstance(x, PackedSpikes)
        if x.dtype != torch.bool:
            out = cls_forward(m, x)
        elif isinstance(m, nn.AdaptiveAvgPool2d) and pool_is_identity(m, x):
            return x
        elif is_tiling_max_pool(m):  # the max of spikes is their OR
            k = pool_size(m)
            return x.map_bytes(lambda b: or_pool(b, k)) if packed else or_pool(x, k)
        elif isinstance(m, _MAX_POOLS):
            x = x.unpacked() if packed else x
            out = cls_forward(m, x.view(torch.uint8)).view(torch.bool)
            return PackedSpikes(pack(out.view(T, -1, *out.shape[1:])), T) if packed else out
        else:
            out = per_step(lambda xt: cls_forward(m, xt), x, T, self.dtype)
        setattr(out, FRESH, True)
        return out


class RecordReshape:
    """A reshaping layer: packed spikes stay packed when the batch dimension is left alone
    (the op then acts on the bytes as on the spikes)."""

    original: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.original
        cls_forward = type(m).forward
        first = {nn.Flatten: "start_dim", nn.Unflatten: "dim"}.get(type(m))
        if isinstance(x, PackedSpikes) and (first is None or getattr(m, first) % x.dim() != 0):
            return x.map_bytes(lambda b: cls_forward(m, b))
        return cls_forward(m, x)


def spike_phases(records: dict, recorder: UnitRecorder, T: int, dtype: torch.dtype) -> PhaseOf:
    """What each module of the model becomes in the spike pass (``derive``)."""

    def phase_of(m: nn.Module) -> tuple[type, dict[str, Any]] | None:
        if isinstance(m, FoldedNeuron):
            return RecordNeuron, {"records": records, "recorder": recorder}
        if isinstance(m, _BatchNorm):
            return RecordNorm, {"records": records}
        if any(True for _ in m.children()):
            return None
        if isinstance(m, _SHAPE_ONLY):
            return RecordReshape, {}
        return RecordLeaf, {"T": T, "dtype": dtype}

    return phase_of
