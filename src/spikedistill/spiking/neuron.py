"""Multi-step spiking neurons on time-first tensors ``[T, B, ...]``.

The neurons are stateless across calls: the membrane starts at 0 on every call, so there is no
``reset_net`` to forget and nothing leaks between batches.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .config import NeuronConfig, neuron_config
from .kernels import LIFBackend, backend_for, check_backend_name, choose_backend


class MultiStepLIF(torch.autograd.Function):
    """``(x [T, ...], cfg, return_membrane, backend) -> (spikes [T, ...], membrane [T, ...] or
    None)`` on ``backend``; keeps only the pre-reset membrane for backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, cfg: NeuronConfig, return_membrane: bool, backend):
        needs_grad = ctx.needs_input_grad[0]
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
        return backend.backward(grad_spikes.contiguous(), membrane, ctx.cfg), None, None, None


def lif_multistep(
    x: torch.Tensor, cfg: NeuronConfig, return_membrane: bool = False, backend: str = "auto"
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Run a LIF neuron over ``x [T, B, ...]``; returns 0/1 spikes ``[T, B, ...]``.

    With ``return_membrane`` also returns the pre-reset membrane ``v_t`` (no gradient).
    ``backend``: the kernels that run it (``kernels``; ``auto`` picks per device).
    """
    if x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"expected a time-first tensor [T, ...] with T >= 1, got {tuple(x.shape)}")
    kernels = backend_for(backend, x.device)
    spikes, membrane = MultiStepLIF.apply(x.contiguous(), cfg, return_membrane, kernels)
    return (spikes, membrane) if return_membrane else spikes


class LIF(nn.Module):
    """Multi-step leaky integrate-and-fire neuron: ``[T, B, ...] -> spikes [T, B, ...]``.

    ``LIF(preset="tdbn", **overrides)``; see ``NeuronConfig`` for the dynamics and options.
    ``backend`` names the kernels that run it (``kernels``: ``auto``, ``torch``, ``compile``,
    ``cpp``); they change speed, not results. ``set_backend(model, name)`` sets every neuron's.
    """

    backend: str = "auto"  # also for a LIF pickled before neurons named their backend

    def __init__(
        self, preset: str | NeuronConfig | None = "tdbn", backend: str = "auto", **overrides: Any
    ) -> None:
        super().__init__()
        self.config = neuron_config(preset, **overrides)
        self.backend = check_backend_name(backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return lif_multistep(x, self.config, backend=self.backend)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"decay={c.decay}, threshold={c.threshold}, reset={c.reset}, "
            f"detach_reset={c.detach_reset}, surrogate={c.surrogate}(alpha={c.alpha}), "
            f"backend={self.backend}"
        )


class IF(LIF):
    """Integrate-and-fire: a ``LIF`` without leak (``decay = 1``)."""

    def __init__(
        self, preset: str | NeuronConfig | None = "if", backend: str = "auto", **overrides: Any
    ) -> None:
        overrides.setdefault("decay", 1.0)
        super().__init__(preset, backend, **overrides)


def set_backend(model: nn.Module, name: str, device: torch.device | str | None = None) -> str:
    """Run every spikedistill neuron in ``model`` on backend ``name`` (or ``auto``); returns the
    backend chosen for ``device`` (default: where the model's parameters are, else the CPU),
    checked and built there (``ConfigError`` if it cannot run)."""
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else "cpu"
    chosen = choose_backend(name, device)
    for m in model.modules():
        if isinstance(m, LIF):
            m.backend = name
    return chosen
