r"""Rate-BP's spike pass (``view``): the helpers that run layers on spikes packed 8 steps per
byte, and ``UnitRecorder``, which runs a student's (convolution,) BatchNorm, LIF units in
output-channel chunks and records their BatchNorm statistics, spike counts and eligibilities."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..spiking.kernels import NormDrive, backend_for
from ..spiking.kernels.spike_pack import PackedSpikes, unpack
from ..spiking.layers import FoldedNeuron
from ..spiking.norm_lif import batch_statistics, bn_momentum, bn_scale_shift, has_hooks

_BatchNorm = nn.modules.batchnorm._BatchNorm
_Conv = nn.modules.conv._ConvNd
FRESH = "_ratebp_fresh"  # marks a spike-pass tensor that only its consumer holds


def or_pool(x: torch.Tensor, k: int) -> torch.Tensor:
    """Max-pool of spikes over tiling ``k x k`` windows, ``x [N, C, H, W]`` ``bool`` or packed
    bytes (``uint8``, bit ``b`` = step ``b``): the bitwise OR of the ``k^2`` strided sub-grids
    (several times faster than a max-pool on bytes). For ``k = 2`` on even sizes, the two bytes
    of a window row are one ``int16``: one OR of the row pairs, then of each word's two bytes."""
    oh, ow = x.shape[-2] // k, x.shape[-1] // k
    if k == 2 and x.is_contiguous() and x.shape[-2] == 2 * oh and x.shape[-1] == 2 * ow:
        pairs = x.view(torch.uint8).view(-1, 2, 2 * ow).view(torch.int16)  # [rows/2, 2, ow]
        words = torch.bitwise_or(pairs[:, 0], pairs[:, 1])
        out = words.bitwise_or_(words >> 8).bitwise_and_(0xFF).to(torch.uint8)
        return out.view(x.dtype).view(*x.shape[:-2], oh, ow)
    out = None
    for i in range(k):
        for j in range(k):
            part = x[..., i : i + k * oh : k, j : j + k * ow : k]
            out = part.clone() if out is None else out.bitwise_or_(part)
    return out


def steps_of(x: torch.Tensor, start: int, stop: int, T: int, dtype: torch.dtype) -> torch.Tensor:
    """Steps ``start..stop-1`` of spikes ``x [T*rows, ...]`` (bool or packed) as ``dtype``."""
    if isinstance(x, PackedSpikes):
        return x.steps(start, stop, dtype)
    rows = x.shape[0] // T
    return x[start * rows : stop * rows].to(dtype)


def channels_of(x: torch.Tensor, sl: slice) -> torch.Tensor:
    """Channels ``sl`` of ``x [N, C, ...]``; packed spikes are unpacked to ``bool`` for them."""
    if isinstance(x, PackedSpikes):
        return unpack(x.packed[:, :, sl], x.time_steps).flatten(0, 1)
    return x[:, sl]


def per_step(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, T: int, dtype):
    """``fn`` applied to each time step of folded spikes ``[T*B, ...]`` (bool or packed) as
    ``dtype``, into one output."""
    rows = x.shape[0] // T
    out = None
    for t in range(T):
        y = fn(steps_of(x, t, t + 1, T, dtype))
        if out is None:
            out = y.new_empty((x.shape[0], *y.shape[1:]))
        out[t * rows : (t + 1) * rows] = y
    return out


class UnitRecorder:
    r"""Spike pass of the student's (convolution,) BatchNorm, LIF units (``conv_norm_act``):
    records what ``_norm_record`` and ``_neuron_record`` would, in one go per unit.

    BatchNorm statistics and the neuron are per channel, so beyond ``stored_steps`` steps the
    unit runs its output channels in chunks, so that the float pre-activation ``[T*B, chunk,
    H, W]`` never holds more than ``stored_steps`` steps' worth of the layer (memory flat in
    T); the convolution then runs on the spikes chunk by chunk, ``stored_steps / chunks``
    steps per call (at least one; the same FLOPs in all, in smaller calls). The backend's
    ``norm_record`` normalises that buffer and runs the neuron. Units it cannot take (hooks,
    grouped or foreign convolutions, modules outside the student) go the usual way."""

    def __init__(self, view, records: dict) -> None:
        self.records = records
        self.neurons = {id(m) for m in view.neurons}
        self.norms = {id(m) for m in view.norms}
        self.convs = {id(m) for m in view.leaves if isinstance(m, _Conv) and m.groups == 1}
        self.dtype = next(view.model.parameters()).dtype
        self.stored_steps, self.units = view.stored_steps, view.units

    def takes(self, conv, norm, act) -> bool:
        modules = [norm, act, act.neuron] + ([] if conv is None else [conv])
        return (
            self.units
            and id(act) in self.neurons
            and id(norm) in self.norms
            and (conv is None or id(conv) in self.convs)
            and not any(has_hooks(m) for m in modules)
        )

    def __call__(self, conv, norm, act, x, residual, static) -> torch.Tensor | None:
        if not (isinstance(act, FoldedNeuron) and self.takes(conv, norm, act)):
            return None
        T, cfg = act.T, act.neuron.config
        if static:  # a direct-encoded stem: one convolution, the drive repeats over T
            y = x if conv is None else type(conv).forward(conv, x)
            y = y.to(self.dtype) if conv is not None else y.to(self.dtype, copy=True)
            mean, var = batch_statistics(norm, y)
            scale, shift = affine(norm, mean, var)
            backend = backend_for(act.neuron.backend, y.device)
            drive = NormDrive(y, scale, shift, None, T, True)
            spikes, counts, elig = backend.norm_record(drive, cfg)
            self.records[norm], self.records[act] = (mean, var), (counts, elig)
            return PackedSpikes(spikes, T)
        rows = x.shape[0] // T
        channels = x.shape[1] if conv is None else conv.out_channels
        stored = self.stored_steps
        per_chunk = channels if stored >= T else -(-channels * stored // T)
        chunks = [slice(c, min(c + per_chunk, channels)) for c in range(0, channels, per_chunk)]
        # steps per convolution call: all of them, or stored_steps shared among the chunks
        block = T if len(chunks) == 1 else max(1, stored // len(chunks))
        momentum = bn_momentum(norm) if norm.training and norm.running_mean is not None else None
        stats, out = [], None
        backend = backend_for(act.neuron.backend, x.device)
        for sl in chunks:
            y = self.pre_activation(conv, x, T, rows, sl, block)
            mean, var = batch_statistics(norm, y, sl, momentum)
            r = None if residual is None else channels_of(residual, sl)
            scale, shift = affine(norm, mean, var, sl)
            drive = NormDrive(y, scale, shift, r, T, False)
            spikes, counts, elig = backend.norm_record(drive, cfg)
            del y
            if len(chunks) == 1:
                out = (spikes, counts, elig)
            else:
                if out is None:
                    full = (channels, *elig.shape[2:])
                    out = tuple(
                        torch.empty(
                            t.shape[: t.dim() - len(full)] + full, dtype=t.dtype, device=t.device
                        )
                        for t in (spikes, counts, elig)
                    )
                out[0][:, :, sl], out[1][:, sl], out[2][:, sl] = spikes, counts, elig
            stats.append((mean, var))
        mean, var = (torch.cat(v) for v in zip(*stats, strict=True))
        spikes, counts, elig = out
        self.records[norm], self.records[act] = (mean, var), (counts, elig)
        return PackedSpikes(spikes, T)

    def pre_activation(self, conv, x, T: int, rows: int, sl: slice, steps: int) -> torch.Tensor:
        """Float ``[T*rows, chunk, ...]``: the convolution's channels ``sl``, ``steps`` steps
        per call (each block's float input and output freed before the next), or the chunk of
        ``x`` itself without a convolution, as a new tensor."""
        if conv is None:
            return channels_of(x, sl).to(self.dtype, copy=True)
        weight = conv.weight[sl]
        bias = None if conv.bias is None else conv.bias[sl]
        out = None
        for t in range(0, T, steps):
            y = conv._conv_forward(steps_of(x, t, min(T, t + steps), T, self.dtype), weight, bias)
            if steps == T:
                return y
            if out is None:
                out = y.new_empty((x.shape[0], *y.shape[1:]))
            out[t * rows : t * rows + y.shape[0]] = y
            del y
        return out


def affine(norm: _BatchNorm, mean, var, sl: slice = slice(None)):
    """Per-channel ``(scale, shift)`` of ``norm`` (channels ``sl``) for these statistics."""
    weight = None if norm.weight is None else norm.weight[sl]
    bias = None if norm.bias is None else norm.bias[sl]
    return bn_scale_shift(weight, bias, mean, torch.rsqrt(var + norm.eps))
