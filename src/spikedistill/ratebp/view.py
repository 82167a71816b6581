r"""Rate-based backpropagation (Rate-BP, docs/methods.md §4): train a spiking model through a
T-free "rate graph" instead of unrolling time.

``RateBackprop(model)(x)`` runs two passes over the modules of a zoo SNN, each in a derived
network that shares the model's parameters, buffers and hooks but has modules of its own
(``derive``; the phases are in ``spike_pass`` and ``rate_pass``):

1. **spike pass** (no autograd): the normal forward over ``T`` steps; every neuron also records
   its firing rate ``r`` and eligibility ``e`` (``kernels.record``), every BatchNorm the batch
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
byte (``kernels.spike_pack.PackedSpikes``) and keep spike counts as bytes; a model's convolution +
BatchNorm + LIF units (``conv_norm_act``) run in output-channel chunks whose float
pre-activation holds at most ``stored_steps`` (default ``STORED_STEPS`` = 4; fewer: less memory,
smaller and slower convolutions) steps' worth of the layer (BatchNorm statistics and neurons are
per channel, so nothing changes but the order);
other layers fed by spikes run one time step at a time on a float copy of that step (a tiling
max-pool is an OR of the packed bytes, flattening reshapes them), and a static input is not
copied ``T`` times. What still grows with ``T`` is one bit per neuron and step of spikes. In the
rate pass a tiling max-pool keeps only its argmax indices, the neuron nothing but its record.

The model itself is never changed (its modules, ``forward`` and ``T`` stay as they are; a BRD
teacher is not part of it), and nothing changes the global grad mode: inside
``torch.no_grad()`` or in eval mode the call is the plain forward.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..models import ZooModel
from ..models.contract import is_neuron
from ..spiking.encoding import time_first
from ..spiking.layers import FoldedNeuron
from ..spiking.neuron import LIF
from .derive import derive
from .rate_pass import rate_phases
from .spike_pass import spike_phases
from .units import UnitRecorder

#: a unit's float pre-activation holds at most this many steps' worth of its layer
STORED_STEPS = 4


def scale_gradient(x: torch.Tensor, divisor: float) -> torch.Tensor:
    """``x`` (the same value) whose gradient is divided by ``divisor``."""
    scaled = x / divisor
    return x.detach() + (scaled - scaled.detach())


def check_zoo_snn(model: nn.Module) -> None:
    """``ConfigError`` unless ``model`` is a zoo SNN of spikedistill's LIF/IF neurons: the
    spike pass runs the zoo's layers on packed spikes and reads BatchNorm inputs as
    ``[T*B, C, ...]``; other neurons would not be replaced (snnTorch's would train through
    their own surrogate at one step) or would feed time-first maps to folded kernels."""
    if not isinstance(model, ZooModel):
        neurons = [p for p, m in model.named_modules() if is_neuron(m)]
        what = f"its neurons ({', '.join(neurons[:2])}{', ...' * (len(neurons) > 2)})"
        raise ConfigError(
            "rate-based backprop (train.backprop: rate) trains the zoo's SNNs; "
            f"{type(model).__name__} is not one, so {what if neurons else 'it'} would not "
            "be replaced: train it with train.backprop: bptt"
        )
    neurons = [m for m in model.modules() if isinstance(m, FoldedNeuron)]
    bad = [type(m.neuron).__name__ for m in neurons if not isinstance(m.neuron, LIF)]
    if bad:
        raise ConfigError(f"rate-based backprop supports spikedistill LIF/IF neurons, not {bad}")


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
        check_zoo_snn(model)
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
        dtype = next(model.parameters()).dtype
        recorder = UnitRecorder(records, dtype, self.stored_steps, self.units)
        spike_net = derive(model, spike_phases(records, recorder, model.T, dtype))
        with torch.no_grad():
            self.last_spike_logits = spike_net(x, per_step=True)
        xbar = time_first(x, model.batch_first).mean(0) if x.dim() == 5 else x
        rate_net = derive(model, rate_phases(records))
        # the rate graph does not grow with T; nor is it checkpointed (nothing to save)
        rate_net.T, rate_net.checkpoint_blocks = 1, False
        logits = rate_net(xbar, per_step=True)  # [1, B, K]
        return logits if per_step else logits[0]
