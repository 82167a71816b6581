r"""A BatchNorm feeding a LIF neuron as one autograd op, for BPTT training.

Run one after the other, BatchNorm keeps its input ``x`` (the convolution's output) for backward
and the LIF its pre-reset membrane ``v``: two float tensors per layer. ``BatchNormLIF`` keeps
only ``x`` (and the spikes, saved as ``bool`` and shared with the next layer, which saves them
anyway) and recomputes the neuron input and the membrane in backward, elementwise:

    y = w (x - mu) / sqrt(var + eps) + b  [+ r],     s = LIF(y)
    dL/dy = LIF backward along the forward's spikes,  dL/dx, dL/dw, dL/db = BatchNorm backward,
    dL/dr = dL/dy

with batch statistics over every dim but the channel (``T*B*H*W``: tdBN). ``x`` is time-folded
``[T*B, C, ...]``, or ``[B, C, ...]`` for a static stem whose output drives every step. The
residual ``r [T*B, C, ...]`` is the shortcut of a post-activation residual block.

``norm_act(norm, act, x)`` and ``conv_norm_act(conv, norm, act, x)`` are how models call a
(convolution,) BatchNorm and activation unit: the fused op where it applies (a train-mode
``BatchNorm`` feeding a spikedistill LIF while autograd records, with no hooks on either module,
no forward replaced, and ``x`` in the BN's dtype), else ``act(norm(conv(x)) [+ r])`` as
written. An activation that is a ``UnitRunner`` (Rate-BP's spike pass) may run a whole unit its
own way first. ``run_layers`` runs a list of layers, finding the units in it, and runs a tiling
max-pool of spikes as ``max_pool.TilingMaxPool``, which saves only its argmax.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .config import NeuronConfig
from .kernels import BatchStats, LIFBackend, NormDrive, backend_for
from .layers import FoldedNeuron
from .max_pool import TilingMaxPool, is_tiling_max_pool, pool_size
from .neuron import LIF
from .saved_spikes import is_marked, mark_spikes

_BatchNorm = nn.modules.batchnorm._BatchNorm
_Conv = nn.modules.conv._ConvNd

Layer = Callable[[torch.Tensor], torch.Tensor]


class UnitRunner:
    """An activation module that may run its whole (convolution,) BatchNorm, activation unit
    itself: ``conv_norm_act`` and ``norm_act`` hand the unit to ``run_unit`` first (Rate-BP's
    spike pass records a unit in one go this way)."""

    def run_unit(
        self,
        conv: nn.Module | None,
        norm: nn.Module,
        x: torch.Tensor,
        residual: torch.Tensor | None,
        static: bool,
    ) -> torch.Tensor | None:
        """The unit's output, or ``None`` to leave the unit to the usual path."""
        return None


def bn_momentum(m: _BatchNorm) -> float:
    """The momentum of this train-mode step of ``m``, counting the step as the class does."""
    if m.num_batches_tracked is not None:
        m.num_batches_tracked.add_(1)
        if m.momentum is None:  # cumulative moving average
            return 1.0 / float(m.num_batches_tracked)
    return 0.0 if m.momentum is None else m.momentum


@torch.no_grad()
def batch_statistics(
    m: _BatchNorm,
    x: torch.Tensor,
    channels: slice = slice(None),
    momentum: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, biased var)`` per channel that ``m`` normalises ``x`` with in its mode, updating
    the running statistics of a train-mode step exactly as the class does. ``x`` may hold only
    the ``channels`` of ``m``; a step split into such chunks passes its ``bn_momentum(m)``
    (which counts the step) to each."""
    if m.training and m.running_mean is not None:
        momentum = bn_momentum(m) if momentum is None else momentum
        return torch.batch_norm_update_stats(
            x, m.running_mean[channels], m.running_var[channels], momentum
        )
    if m.training or m.running_mean is None:
        var, mean = torch.var_mean(x, [0, *range(2, x.dim())], correction=0)
        return mean, var
    return m.running_mean[channels], m.running_var[channels]


def unit_statistics(
    m: _BatchNorm, x: torch.Tensor, backend: LIFBackend
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, invstd)`` of a train-mode BatchNorm unit's batch by ``backend.batch_stats``
    (running statistics updated as ``batch_statistics``)."""
    if not m.training:
        mean, var = batch_statistics(m, x)
        return mean, torch.rsqrt(var + m.eps)
    x = x.detach()  # BatchNormLIF takes them as constants; its backward accounts for them
    if m.running_mean is None:
        return backend.batch_stats(x, None, None, 0.0, m.eps)
    return backend.batch_stats(x, m.running_mean, m.running_var, bn_momentum(m), m.eps)


def bn_scale_shift(
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    mean: torch.Tensor,
    invstd: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(scale, shift)`` with ``BN(x) = x * scale + shift``: ``scale = w * invstd``,
    ``shift = b - mean * scale`` (``invstd = (var + eps)^-1/2``; no affine: ``w = 1, b = 0``)."""
    scale = invstd if weight is None else invstd * weight
    shift = -mean * scale if bias is None else torch.addcmul(bias, mean, scale, value=-1.0)
    return scale, shift


class BatchNormLIF(torch.autograd.Function):
    """``(x, weight, bias, mean, invstd, residual, cfg, T, static, backend) -> (spikes
    [T*B, C, ...], the same as bool)`` for batch statistics ``mean``, ``invstd = (var +
    eps)^-1/2`` of ``x``. The bool spikes are what backward keeps, and what layers reading the
    spikes save."""

    @staticmethod
    def forward(
        ctx, x, weight, bias, mean, invstd, residual, cfg: NeuronConfig, T, static, backend
    ):
        scale, shift = bn_scale_shift(weight, bias, mean, invstd)
        spikes, bits = backend.norm_forward(NormDrive(x, scale, shift, residual, T, static), cfg)
        mark_spikes(spikes, bits)
        ctx.mark_non_differentiable(bits)
        ctx.cfg, ctx.T, ctx.static, ctx.backend = cfg, T, static, backend
        ctx.save_for_backward(x, weight, mean, invstd, scale, shift, residual, bits)
        return spikes, bits

    @staticmethod
    def backward(ctx, grad_spikes, _grad_bits):
        x, weight, mean, invstd, scale, shift, residual, bits = ctx.saved_tensors
        grad_x, grad_w, grad_b, grad_r = ctx.backend.norm_input_backward(
            grad_spikes.contiguous(),
            bits,  # bool, read as 0/1 bytes (a dtype view: torch 2.11's Inductor cannot lower it)
            NormDrive(x, scale, shift, residual, ctx.T, ctx.static),
            BatchStats(weight, mean, invstd),
            ctx.cfg,
            tuple(ctx.needs_input_grad[i] for i in (0, 1, 2, 5)),  # x, weight, bias, residual
        )
        return grad_x, grad_w, grad_b, None, None, grad_r, None, None, None, None


def has_hooks(m: nn.Module) -> bool:
    """Whether ``m`` has forward or backward hooks of its own."""
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks) or bool(
        m._backward_pre_hooks
    )


def global_hooks() -> bool:
    """Whether any global module hook is registered."""
    g = nn.modules.module
    return bool(g._global_forward_hooks or g._global_forward_pre_hooks) or bool(
        g._global_backward_hooks or g._global_backward_pre_hooks
    )


def runs_as_written(*modules: nn.Module) -> bool:
    """Whether code may do these modules' work without calling them: none has a replaced
    ``forward`` or hooks of its own, and no global module hook is registered."""
    if global_hooks():
        return False
    return not any("forward" in vars(m) or has_hooks(m) for m in modules)


def fusable(norm: nn.Module, act: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``act(norm(x))`` may run as ``BatchNormLIF`` (see the module docstring)."""
    return (
        isinstance(norm, _BatchNorm)
        and isinstance(act, FoldedNeuron)
        and norm.training
        and torch.is_grad_enabled()
        and type(norm).forward is _BatchNorm.forward  # not SyncBatchNorm or a custom one
        and type(act.neuron).forward is LIF.forward
        and x.dtype == (norm.weight.dtype if norm.weight is not None else x.dtype)
        and x.dim() >= 2
        and x.is_floating_point()
        and runs_as_written(norm, act)
        and not has_hooks(act.neuron)
    )


def norm_act(
    norm: nn.Module,
    act: nn.Module,
    x: torch.Tensor,
    residual: torch.Tensor | None = None,
    static: bool = False,
) -> torch.Tensor:
    """``act(norm(x) + residual)``; fused into ``BatchNormLIF`` where that applies.

    ``static``: ``x [B, ...]`` is a direct-encoded stem output, the neuron input at every step.
    The unfused residual sum is in place (BatchNorm's backward does not need its output)."""
    if isinstance(act, UnitRunner):
        out = act.run_unit(None, norm, x, residual, static)
        if out is not None:
            return out
    if fusable(norm, act, x):
        x = x.contiguous()
        backend = backend_for(act.neuron.backend, x.device)
        mean, invstd = unit_statistics(norm, x, backend)
        cfg = act.neuron.config
        spikes, _ = BatchNormLIF.apply(
            x, norm.weight, norm.bias, mean, invstd, residual, cfg, act.T, static, backend
        )
        return spikes
    y = norm(x)
    if residual is not None:
        y += residual
    return act(y, static=True) if static else act(y)


def conv_norm_act(
    conv: nn.Module,
    norm: nn.Module,
    act: nn.Module,
    x: torch.Tensor,
    residual: torch.Tensor | None = None,
    static: bool = False,
) -> torch.Tensor:
    """``act(norm(conv(x)) + residual)``: ``norm_act`` on ``conv(x)``, unless ``act`` is a
    ``UnitRunner`` that runs the unit. ``static``: ``x`` is the image of a direct-encoded stem."""
    if isinstance(act, UnitRunner):
        out = act.run_unit(conv, norm, x, residual, static)
        if out is not None:
            return out
    return norm_act(norm, act, conv(x), residual=residual, static=static)


def max_pool(pool: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``pool(x)`` for a tiling ``nn.MaxPool2d``; on spikes (or rates) that autograd saves as
    ``bool`` (``saved_spikes``), run as ``TilingMaxPool``: the same values and gradient, with no
    float copy of the input unpacked in backward (with nothing replaced or hooked)."""
    if torch.is_grad_enabled() and is_marked(x) and runs_as_written(pool):
        return TilingMaxPool.apply(x, pool_size(pool))
    return pool(x)


def _is_activation(m: nn.Module) -> bool:
    return isinstance(m, (FoldedNeuron, nn.ReLU))


def layer_steps(layers: Sequence[nn.Module], static: bool = False) -> list[Layer]:
    """``layers`` as the calls ``run_layers`` makes, in order: each convolution + BatchNorm +
    activation one ``conv_norm_act``, each other BatchNorm + activation one ``norm_act``, each
    tiling max-pool one ``max_pool``, any other layer itself; ``static`` is passed to a final
    unit or neuron (a direct-encoded stem).
    A caller that loops over them itself (``x = step(x)``) frees each input once it is used."""
    steps: list[Layer] = []
    i, n = 0, len(layers)
    while i < n:
        m = layers[i]
        unit = isinstance(m, _Conv) and i + 2 < n and isinstance(layers[i + 1], _BatchNorm)
        if unit and _is_activation(layers[i + 2]):
            last = static and i + 3 == n
            steps.append(
                functools.partial(conv_norm_act, m, layers[i + 1], layers[i + 2], static=last)
            )
            i += 3
        elif isinstance(m, _BatchNorm) and i + 1 < n and _is_activation(layers[i + 1]):
            steps.append(
                functools.partial(norm_act, m, layers[i + 1], static=static and i + 2 == n)
            )
            i += 2
        elif is_tiling_max_pool(m):
            steps.append(functools.partial(max_pool, m))
            i += 1
        elif static and i + 1 == n and isinstance(m, FoldedNeuron):
            steps.append(functools.partial(m, static=True))
            i += 1
        else:
            steps.append(m)
            i += 1
    return steps


def run_layers(layers: Sequence[nn.Module], x: torch.Tensor, static: bool = False) -> torch.Tensor:
    """Apply ``layers`` in order, finding the units in them (``layer_steps``)."""
    for step in layer_steps(layers, static):
        x = step(x)
    return x
