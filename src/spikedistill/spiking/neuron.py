"""Multi-step spiking neurons on time-first tensors ``[T, B, ...]``.

The neurons are stateless across calls: the membrane starts at 0 on every call, so there is no
``reset_net`` to forget and nothing leaks between batches.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .backends import LIFBackend, active_backend
from .config import NeuronConfig, neuron_config


class MultiStepLIF(torch.autograd.Function):
    """``(x [T, ...], cfg, return_membrane) -> (spikes [T, ...], membrane [T, ...] or None)``
    on the active backend; keeps only the pre-reset membrane for backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, cfg: NeuronConfig, return_membrane: bool):
        needs_grad = ctx.needs_input_grad[0]
        backend = active_backend()
        spikes, membrane = backend.forward(x, cfg, needs_grad or return_membrane)
        ctx.cfg, ctx.backend = cfg, backend
        if needs_grad:
            ctx.save_for_backward(membrane)
        if membrane is not None:
            ctx.mark_non_differentiable(membrane)
        return spikes, membrane if return_membrane else None

    @staticmethod
    def backward(ctx, grad_spikes, _grad_membrane):
        (membrane,) = ctx.saved_tensors
        backend: LIFBackend = ctx.backend
        return backend.backward(grad_spikes.contiguous(), membrane, ctx.cfg), None, None


def lif_multistep(
    x: torch.Tensor, cfg: NeuronConfig, return_membrane: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Run a LIF neuron over ``x [T, B, ...]``; returns 0/1 spikes ``[T, B, ...]``.

    With ``return_membrane`` also returns the pre-reset membrane ``v_t`` (no gradient).
    """
    if x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"expected a time-first tensor [T, ...] with T >= 1, got {tuple(x.shape)}")
    spikes, membrane = MultiStepLIF.apply(x.contiguous(), cfg, return_membrane)
    return (spikes, membrane) if return_membrane else spikes


class LIF(nn.Module):
    """Multi-step leaky integrate-and-fire neuron: ``[T, B, ...] -> spikes [T, B, ...]``.

    ``LIF(preset="tdbn", **overrides)``; see ``NeuronConfig`` for the dynamics and options.
    """

    def __init__(self, preset: str | NeuronConfig | None = "tdbn", **overrides: Any) -> None:
        super().__init__()
        self.config = neuron_config(preset, **overrides)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return lif_multistep(x, self.config)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"decay={c.decay}, threshold={c.threshold}, reset={c.reset}, "
            f"detach_reset={c.detach_reset}, surrogate={c.surrogate}(alpha={c.alpha})"
        )


class IF(LIF):
    """Integrate-and-fire: a ``LIF`` without leak (``decay = 1``)."""

    def __init__(self, preset: str | NeuronConfig | None = "if", **overrides: Any) -> None:
        overrides.setdefault("decay", 1.0)
        super().__init__(preset, **overrides)
