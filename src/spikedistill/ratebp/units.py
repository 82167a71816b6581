"""Rate-BP's spike pass of a (convolution,) BatchNorm, LIF unit in one go (``UnitRecorder``)."""

from __future__ import annotations

import torch
from torch import nn

from ..spiking.kernels import NormDrive, backend_for
from ..spiking.kernels.spike_pack import PackedSpikes
from ..spiking.norm_lif import batch_statistics, bn_momentum, bn_scale_shift
from .packed_ops import channels_of, steps_of

_BatchNorm = nn.modules.batchnorm._BatchNorm


class UnitRecorder:
    r"""Spike pass of the student's (convolution,) BatchNorm, LIF units (``conv_norm_act``):
    records what ``RecordNorm`` and ``RecordNeuron`` would, in one go per unit.

    BatchNorm statistics and the neuron are per channel, so beyond ``stored_steps`` steps the
    unit runs its output channels in chunks, so that the float pre-activation ``[T*B, chunk,
    H, W]`` never holds more than ``stored_steps`` steps' worth of the layer (memory flat in
    T); the convolution then runs on the spikes chunk by chunk, ``stored_steps / chunks``
    steps per call (at least one; the same FLOPs in all, in smaller calls). The backend's
    ``norm_record`` normalises that buffer and runs the neuron. It is called with the
    student's own modules; ``units=False`` (a check) declines every unit."""

    def __init__(self, records: dict, dtype: torch.dtype, stored_steps: int, units: bool) -> None:
        self.records, self.dtype = records, dtype
        self.stored_steps, self.units = stored_steps, units

    def __call__(self, conv, norm, act, x, residual, static) -> torch.Tensor | None:
        """The unit's spikes (packed), its statistics recorded; ``None``: not taken."""
        if not self.units:
            return None
        if static:
            return self._static_unit(conv, norm, act, x)
        T, cfg = act.T, act.neuron.config
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
            spikes, counts, elig = backend.norm_record(NormDrive(y, scale, shift, r, T, False), cfg)
            del y  # free the chunk before the next
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

    def _static_unit(self, conv, norm, act, x) -> torch.Tensor:
        """A direct-encoded stem: one convolution, the drive repeats over T."""
        T, cfg = act.T, act.neuron.config
        y = x if conv is None else type(conv).forward(conv, x)
        y = y.to(self.dtype) if conv is not None else y.to(self.dtype, copy=True)
        mean, var = batch_statistics(norm, y)
        scale, shift = affine(norm, mean, var)
        backend = backend_for(act.neuron.backend, y.device)
        spikes, counts, elig = backend.norm_record(NormDrive(y, scale, shift, None, T, True), cfg)
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
