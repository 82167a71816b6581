r"""Rate-based backpropagation (Rate-BP, methods.md §4): train a spiking model through a
T-free "rate graph" instead of unrolling time.

``RateBackprop(model)(x)`` runs two passes over the same modules of a zoo SNN:

1. **spike pass** (no autograd): the normal forward over ``T`` steps; every neuron also records
   its firing rate ``r`` and eligibility ``e`` (``rate_stats``), every BatchNorm the batch
   mean and biased variance of its input (and updates its running stats once, as usual);
2. **rate pass** (autograd): the same modules once on the time-averaged input ``xbar`` (the
   image itself for direct encoding), with every neuron returning the spike-pass rate ``r``
   with the gradient ``dL/dx = e * dL/dr`` and every BatchNorm normalising with the spike-pass
   statistics (value) while its gradient is that of a train-mode BN on the rate tensor
   (straight-through statistics); running stats are left alone. The autograd functions of this
   pass are in ``rate_pass``.

Convolutions, linear layers, average pooling and residual sums are linear, so the rate-pass
logits equal the spike-pass mean logits (max-pooling is the exception). The rate graph is
independent of ``T``, and so, nearly, is the spike pass: neurons emit spikes packed 8 steps per
byte (``spike_pack.PackedSpikes``) and keep spike counts as bytes; a model's convolution +
BatchNorm + LIF units (``conv_norm_act``) run in output-channel chunks whose float
pre-activation holds at most ``stored_steps`` (default ``STORED_STEPS`` = 4; fewer: less memory,
smaller and slower convolutions) steps' worth of the layer (BatchNorm statistics and neurons are
per channel, so nothing changes but the order);
other layers fed by spikes run one time step at a time on a float copy of that step (a tiling
max-pool is an OR of the packed bytes, flattening reshapes them), and a static input is not
copied ``T`` times. What still grows with ``T`` is one bit per neuron and step of spikes. In the
rate pass a tiling max-pool keeps only its argmax indices, the neuron nothing but its record.

Only modules inside ``model`` are switched (a BRD teacher's BatchNorms are never touched), the
switch is undone when the call returns, and nothing changes the global grad mode: inside
``torch.no_grad()`` or in eval mode the call is the plain forward.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import torch
from torch import nn

from ..errors import ConfigError
from .backends import active_backend
from .encoding import time_first
from .layers import FoldedNeuron, pool_is_identity, unfold_time
from .max_pool import TilingMaxPool, is_tiling_max_pool, pool_size
from .neuron import LIF
from .norm_lif import (
    batch_statistics,
    bn_momentum,
    bn_scale_shift,
    has_hooks,
    unit_executor,
)
from .rate_pass import RateNeuron, StraightThroughBatchNorm, per_channel
from .rate_stats import spike_statistics
from .spike_pack import PackedSpikes, pack, unpack

_BatchNorm = nn.modules.batchnorm._BatchNorm
_MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool2d)
_SHAPE_ONLY = (nn.Identity, nn.Flatten, nn.Unflatten)  # fine on bool tensors as they are
_FRESH = "_ratebp_fresh"  # marks a spike-pass tensor that only its consumer holds
_Conv = nn.modules.conv._ConvNd
#: a unit's float pre-activation holds at most this many steps' worth of its layer
STORED_STEPS = 4


def _or_pool(x: torch.Tensor, k: int) -> torch.Tensor:
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


def _steps(x: torch.Tensor, start: int, stop: int, T: int, dtype: torch.dtype) -> torch.Tensor:
    """Steps ``start..stop-1`` of spikes ``x [T*rows, ...]`` (bool or packed) as ``dtype``."""
    if isinstance(x, PackedSpikes):
        return x.steps(start, stop, dtype)
    rows = x.shape[0] // T
    return x[start * rows : stop * rows].to(dtype)


def _channels(x: torch.Tensor, sl: slice) -> torch.Tensor:
    """Channels ``sl`` of ``x [N, C, ...]``; packed spikes are unpacked to ``bool`` for them."""
    if isinstance(x, PackedSpikes):
        return unpack(x.packed[:, :, sl], x.time_steps).flatten(0, 1)
    return x[:, sl]


def _per_step(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, T: int, dtype):
    """``fn`` applied to each time step of folded spikes ``[T*B, ...]`` (bool or packed) as
    ``dtype``, into one output."""
    rows = x.shape[0] // T
    out = None
    for t in range(T):
        y = fn(_steps(x, t, t + 1, T, dtype))
        if out is None:
            out = y.new_empty((x.shape[0], *y.shape[1:]))
        out[t * rows : (t + 1) * rows] = y
    return out


class RateBackprop:
    """A callable training view of a zoo SNN: ``forward(x, per_step)`` as the model's, the
    rate-pass logits ``[B, K]`` (``[1, B, K]`` with ``per_step``). As seen by feature taps
    and losses it is a one-step network whose neurons output firing rates (``T == 1``).
    ``stored_steps``: how many steps' worth of a layer's float pre-activation the spike pass
    may hold (``train.rate_stored_steps``)."""

    spiking = True

    def __init__(self, model: nn.Module, stored_steps: int = STORED_STEPS) -> None:
        if not getattr(model, "spiking", False):
            raise ConfigError("rate-based backprop (train.backprop: rate) needs a spiking model")
        if not isinstance(stored_steps, int) or stored_steps < 1:
            raise ConfigError(f"stored_steps must be an integer >= 1, got {stored_steps!r}")
        self.model, self.stored_steps = model, stored_steps
        self.neurons = [m for m in model.modules() if isinstance(m, FoldedNeuron)]
        bad = [type(m.neuron).__name__ for m in self.neurons if not isinstance(m.neuron, LIF)]
        if bad:
            raise ConfigError(
                f"rate-based backprop supports spikedistill LIF/IF neurons, not {bad}"
            )
        self.norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
        inner = {id(n.neuron) for n in self.neurons}
        leaves = [
            m
            for m in model.modules()
            if not any(True for _ in m.children())
            and not isinstance(m, _BatchNorm)
            and id(m) not in inner
        ]
        self.leaves = [m for m in leaves if not isinstance(m, _SHAPE_ONLY)]
        self.reshapes = [m for m in leaves if isinstance(m, _SHAPE_ONLY)]
        self.last_spike_logits: torch.Tensor | None = None  # [T, B, K] of the last spike pass

    @property
    def T(self) -> int:
        return 1

    def __call__(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        model = self.model
        if not (model.training and torch.is_grad_enabled()):
            return model(x, per_step=per_step)
        records: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
        recorder = _UnitRecorder(self, records)
        with self._patched(records, "record"), torch.no_grad(), unit_executor(recorder):
            self.last_spike_logits = model(x, per_step=True)
        xbar = time_first(x, model.batch_first).mean(0) if x.dim() == 5 else x
        T = model.T
        checkpointing = getattr(model, "checkpoint_blocks", False)
        with self._patched(records, "rate"):
            # the rate graph does not grow with T; a recompute in backward would also miss
            # the patched forwards
            model.T, model.checkpoint_blocks = 1, False
            try:
                logits = model(xbar, per_step=True)  # [1, B, K]
            finally:
                model.T, model.checkpoint_blocks = T, checkpointing
        return logits if per_step else logits[0]

    @contextlib.contextmanager
    def _patched(self, records: dict, phase: str) -> Iterator[None]:
        """Swap the forward of the model's modules for the phase's (undone on exit)."""
        record = phase == "record"
        patched: list[nn.Module] = [*self.neurons, *self.norms]
        for m in self.neurons:
            m.forward = self._neuron_record(m, records) if record else self._neuron_rate(m, records)
        for m in self.norms:
            m.forward = self._norm_record(m, records) if record else self._norm_rate(m, records)
        if record:
            dtype = next(self.model.parameters()).dtype
            for m in self.leaves:
                m.forward = self._leaf_record(m, self.model.T, dtype)
            for m in self.reshapes:
                m.forward = self._reshape_record(m)
            patched += self.leaves + self.reshapes
        else:
            pools = [m for m in self.leaves if is_tiling_max_pool(m) and not has_hooks(m)]
            for m in pools:
                m.forward = functools.partial(TilingMaxPool.apply, k=pool_size(m))
            patched += pools
        try:
            yield
        finally:
            for m in patched:
                del m.forward  # back to the class's forward

    @staticmethod
    def _neuron_record(m: FoldedNeuron, records: dict):
        def forward(x: torch.Tensor, static: bool = False) -> torch.Tensor:
            steps = x.unsqueeze(0).expand(m.T, *x.shape) if static else unfold_time(x, m.T)
            spikes, counts, elig = spike_statistics(steps, m.neuron.config)
            records[m] = (counts, elig)
            return PackedSpikes(spikes, m.T)

        return forward

    @staticmethod
    def _neuron_rate(m: FoldedNeuron, records: dict):
        T = m.T  # of the spike pass (the rate pass runs the model at T = 1)

        def forward(x: torch.Tensor, static: bool = False) -> torch.Tensor:
            counts, elig = records[m]
            return RateNeuron.apply(x, counts, elig, T)

        return forward

    @staticmethod
    def _leaf_record(m: nn.Module, T: int, dtype: torch.dtype):
        """Spike-pass forward of a stateless leaf: ``bool`` spikes in, one step at a time."""
        cls_forward = type(m).forward

        def forward(x: torch.Tensor) -> torch.Tensor:
            packed = isinstance(x, PackedSpikes)
            if x.dtype != torch.bool:
                out = cls_forward(m, x)
            elif isinstance(m, nn.AdaptiveAvgPool2d) and pool_is_identity(m, x):
                return x
            elif is_tiling_max_pool(m):  # the max of spikes is their OR
                k = pool_size(m)
                return x.map_bytes(lambda b: _or_pool(b, k)) if packed else _or_pool(x, k)
            elif isinstance(m, _MAX_POOLS):
                x = x.unpacked() if packed else x
                out = cls_forward(m, x.view(torch.uint8)).view(torch.bool)
                return PackedSpikes(pack(out.view(T, -1, *out.shape[1:])), T) if packed else out
            else:
                out = _per_step(lambda xt: cls_forward(m, xt), x, T, dtype)
            setattr(out, _FRESH, True)
            return out

        return forward

    @staticmethod
    def _reshape_record(m: nn.Module):
        """Spike-pass forward of a reshaping leaf: packed spikes stay packed when the batch
        dimension is left alone (the op then acts on the bytes as on the spikes)."""
        cls_forward = type(m).forward
        first = {nn.Flatten: "start_dim", nn.Unflatten: "dim"}.get(type(m))

        def forward(x: torch.Tensor) -> torch.Tensor:
            packed = isinstance(x, PackedSpikes)
            if packed and (first is None or getattr(m, first) % x.dim() != 0):
                return x.map_bytes(lambda b: cls_forward(m, b))
            return cls_forward(m, x)

        return forward

    @staticmethod
    def _norm_record(m: _BatchNorm, records: dict):
        """Train-mode BN as the class computes it, with the statistics recorded, normalising
        in place when the input is a fresh layer output."""

        def forward(x: torch.Tensor) -> torch.Tensor:
            x = x.to(m.weight.dtype if m.weight is not None else torch.get_default_dtype())
            mean, var = batch_statistics(m, x)  # biased var; running stats updated as usual
            records[m] = (mean, var)
            scale, shift = _affine(m, mean, var)
            fresh = getattr(x, _FRESH, False)
            out = x.mul_(per_channel(scale, x)) if fresh else x * per_channel(scale, x)
            return out.add_(per_channel(shift, x))

        return forward

    @staticmethod
    def _norm_rate(m: _BatchNorm, records: dict):
        def forward(x: torch.Tensor) -> torch.Tensor:
            spike_mean, spike_var = records[m]
            return StraightThroughBatchNorm.apply(x, spike_mean, spike_var, m.weight, m.bias, m.eps)

        return forward


class _UnitRecorder:
    r"""Spike pass of the student's (convolution,) BatchNorm, LIF units (``conv_norm_act``):
    records what ``_norm_record`` and ``_neuron_record`` would, in one go per unit.

    BatchNorm statistics and the neuron are per channel, so beyond ``stored_steps`` steps the
    unit runs its output channels in chunks, so that the float pre-activation ``[T*B, chunk,
    H, W]`` never holds more than ``stored_steps`` steps' worth of the layer (memory flat in
    T); the convolution then runs on the spikes chunk by chunk, ``stored_steps / chunks``
    steps per call (at least one; the same FLOPs in all, in smaller calls). The backend's
    ``norm_record`` normalises that buffer and runs the neuron. Units it cannot take (hooks,
    grouped or foreign convolutions, modules outside the student) go the usual way."""

    def __init__(self, view: RateBackprop, records: dict) -> None:
        self.records = records
        self.neurons = {id(m) for m in view.neurons}
        self.norms = {id(m) for m in view.norms}
        self.convs = {id(m) for m in view.leaves if isinstance(m, _Conv) and m.groups == 1}
        self.dtype = next(view.model.parameters()).dtype
        self.stored_steps = view.stored_steps

    def takes(self, conv, norm, act) -> bool:
        modules = [norm, act, act.neuron] + ([] if conv is None else [conv])
        return (
            id(act) in self.neurons
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
            scale, shift = _affine(norm, mean, var)
            record = active_backend().norm_record
            spikes, counts, elig = record(y, scale, shift, None, cfg, T, True)
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
        for sl in chunks:
            y = self._pre_activation(conv, x, T, rows, sl, block)
            mean, var = batch_statistics(norm, y, sl, momentum)
            r = None if residual is None else _channels(residual, sl)
            scale, shift = _affine(norm, mean, var, sl)
            spikes, counts, elig = active_backend().norm_record(y, scale, shift, r, cfg, T, False)
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

    def _pre_activation(self, conv, x, T: int, rows: int, sl: slice, steps: int) -> torch.Tensor:
        """Float ``[T*rows, chunk, ...]``: the convolution's channels ``sl``, ``steps`` steps
        per call (each block's float input and output freed before the next), or the chunk of
        ``x`` itself without a convolution, as a new tensor."""
        if conv is None:
            return _channels(x, sl).to(self.dtype, copy=True)
        weight = conv.weight[sl]
        bias = None if conv.bias is None else conv.bias[sl]
        out = None
        for t in range(0, T, steps):
            y = conv._conv_forward(_steps(x, t, min(T, t + steps), T, self.dtype), weight, bias)
            if steps == T:
                return y
            if out is None:
                out = y.new_empty((x.shape[0], *y.shape[1:]))
            out[t * rows : t * rows + y.shape[0]] = y
            del y
        return out


def _affine(norm: _BatchNorm, mean, var, sl: slice = slice(None)):
    """Per-channel ``(scale, shift)`` of ``norm`` (channels ``sl``) for these statistics."""
    weight = None if norm.weight is None else norm.weight[sl]
    bias = None if norm.bias is None else norm.bias[sl]
    return bn_scale_shift(weight, bias, mean, torch.rsqrt(var + norm.eps))
