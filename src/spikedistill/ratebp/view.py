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
from collections.abc import Iterator

import torch
from torch import nn

from ..errors import ConfigError
from ..spiking.encoding import time_first
from ..spiking.kernels.record import spike_statistics
from ..spiking.kernels.spike_pack import PackedSpikes, pack
from ..spiking.layers import FoldedNeuron, pool_is_identity, unfold_time
from ..spiking.max_pool import TilingMaxPool, is_tiling_max_pool, pool_size
from ..spiking.neuron import LIF
from ..spiking.norm_lif import batch_statistics, has_hooks, unit_executor
from .rate_pass import RateNeuron, StraightThroughBatchNorm, per_channel
from .spike_pass import FRESH, UnitRecorder, affine, or_pool, per_step

_BatchNorm = nn.modules.batchnorm._BatchNorm
_MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool2d)
_SHAPE_ONLY = (nn.Identity, nn.Flatten, nn.Unflatten)  # fine on bool tensors as they are
#: a unit's float pre-activation holds at most this many steps' worth of its layer
STORED_STEPS = 4


def scale_gradient(x: torch.Tensor, divisor: float) -> torch.Tensor:
    """``x`` (the same value) whose gradient is divided by ``divisor``."""
    scaled = x / divisor
    return x.detach() + (scaled - scaled.detach())


class RateBackprop:
    """A callable training view of a zoo SNN: ``forward(x, per_step)`` as the model's, the
    rate-pass logits ``[B, K]`` (``[1, B, K]`` with ``per_step``). As seen by feature taps
    and losses it is a one-step network whose neurons output firing rates (``T == 1``).
    ``stored_steps``: how many steps' worth of a layer's float pre-activation the spike pass
    may hold (``train.rate_stored_steps``); ``grad_scale``: ``training_loss`` scales the loss
    gradient by ``1/T``, as the reference code does (``train.rate_grad_scale``); ``units=False``
    runs the spike pass layer by layer instead of a (convolution,) BatchNorm, LIF unit at a
    time (the same numbers, more memory: a check of the units). ``last_spike_logits`` are the
    last spike pass's logits ``[T, B, K]``; with ``keep_records``, ``last_records`` holds what
    it recorded per module (BatchNorm statistics; spike counts and eligibilities)."""

    spiking = True

    def __init__(
        self,
        model: nn.Module,
        stored_steps: int = STORED_STEPS,
        grad_scale: bool = False,
        units: bool = True,
        keep_records: bool = False,
    ) -> None:
        if not getattr(model, "spiking", False):
            raise ConfigError("rate-based backprop (train.backprop: rate) needs a spiking model")
        if not isinstance(stored_steps, int) or stored_steps < 1:
            raise ConfigError(f"stored_steps must be an integer >= 1, got {stored_steps!r}")
        self.model, self.stored_steps, self.grad_scale = model, stored_steps, grad_scale
        self.units, self.keep_records = units, keep_records
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
        self.last_records: dict[nn.Module, tuple[torch.Tensor, ...]] = {}

    @property
    def T(self) -> int:
        return 1

    def training_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss to call ``backward`` on: ``loss``, or with ``grad_scale`` the same value
        whose gradient is scaled by ``1/T`` (``T`` of the spike pass)."""
        return scale_gradient(loss, self.model.T) if self.grad_scale else loss

    def __call__(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        model = self.model
        if not (model.training and torch.is_grad_enabled()):
            return model(x, per_step=per_step)
        records: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
        if self.keep_records:
            self.last_records = records
        recorder = UnitRecorder(self, records)
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
                return x.map_bytes(lambda b: or_pool(b, k)) if packed else or_pool(x, k)
            elif isinstance(m, _MAX_POOLS):
                x = x.unpacked() if packed else x
                out = cls_forward(m, x.view(torch.uint8)).view(torch.bool)
                return PackedSpikes(pack(out.view(T, -1, *out.shape[1:])), T) if packed else out
            else:
                out = per_step(lambda xt: cls_forward(m, xt), x, T, dtype)
            setattr(out, FRESH, True)
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
            scale, shift = affine(m, mean, var)
            fresh = getattr(x, FRESH, False)
            out = x.mul_(per_channel(scale, x)) if fresh else x * per_channel(scale, x)
            return out.add_(per_channel(shift, x))

        return forward

    @staticmethod
    def _norm_rate(m: _BatchNorm, records: dict):
        def forward(x: torch.Tensor) -> torch.Tensor:
            spike_mean, spike_var = records[m]
            return StraightThroughBatchNorm.apply(x, spike_mean, spike_var, m.weight, m.bias, m.eps)

        return forward
