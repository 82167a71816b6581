"""Firing rates per neuron layer and time step, streamed over an evaluation.

``FiringRates(model)`` hooks every ``FoldedNeuron`` of ``model`` (any zoo SNN, or any module
built with the library's neurons); each forward adds, per layer and step ``t``, the number of
spikes and of neuron outputs to running sums, so no spike tensor outlives its layer. ``rates()``
gives ``{layer path: tensor [T]}``: the fraction of neurons that fired at each step.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..spiking.layers import FoldedNeuron, unfold_time
from .passes import monitored_pass


class FiringRates:
    """Forward hooks accumulating spike counts ``[T]`` per neuron layer (``remove()`` them)."""

    def __init__(self, model: nn.Module) -> None:
        self.spikes: dict[str, torch.Tensor] = {}
        self.counts: dict[str, float] = {}
        self._handles = [
            m.register_forward_hook(self._hook(name))
            for name, m in model.named_modules()
            if isinstance(m, FoldedNeuron)
        ]
        if not self._handles:
            raise ValueError(f"{type(model).__name__} has no spiking neurons to monitor")

    def _hook(self, name: str):
        def hook(module: FoldedNeuron, _inputs: tuple, out: torch.Tensor) -> None:
            steps = unfold_time(out.detach(), module.T)  # [T, B, ...]
            per_step = steps.flatten(1).sum(1, dtype=torch.float64).cpu()
            if name in self.spikes and len(self.spikes[name]) == len(per_step):
                self.spikes[name] += per_step
            else:
                self.spikes[name] = per_step
                self.counts[name] = 0.0
            self.counts[name] += steps[0].numel()

        return hook

    def rates(self) -> dict[str, torch.Tensor]:
        """``{layer: [T]}`` mean firing rate per step over everything seen so far."""
        return {name: s / self.counts[name] for name, s in self.spikes.items()}

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def firing_rates(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    """Per-layer, per-step firing rates of ``model`` (eval mode) over ``batches``."""
    monitor = FiringRates(model)
    monitored_pass(model, monitor, batches, device)
    return monitor.rates()


def mean_rate(rates: dict[str, torch.Tensor]) -> float:
    """The average over layers and steps (each layer weighs the same)."""
    if not rates:
        return 0.0
    return float(torch.stack([r.mean() for r in rates.values()]).mean())
