"""Firing rates per neuron layer and time step, streamed over an evaluation.

``FiringRates(model)`` hooks every spiking neuron of ``model`` (``models.contract.is_neuron``):
spikedistill's ``FoldedNeuron`` (``[T*B, ...]`` per call), a multi-step SpikingJelly node
(``[T, B, ...]``), or a neuron called once per time step (snnTorch's ``Leaky``, a single-step
SpikingJelly node; ``(spikes, membrane)`` outputs give their spikes). Each forward adds, per
layer and step ``t``, the number of spikes and of neuron outputs to running sums, so no spike
tensor outlives its layer. ``rates()`` gives ``{layer path: tensor [T]}``: the fraction of
neurons that fired at each step.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..models.contract import is_neuron
from ..spiking.layers import FoldedNeuron, unfold_time
from .passes import monitored_pass


def neuron_layers(model: nn.Module) -> dict[str, nn.Module]:
    """``{path: module}`` of ``model``'s neurons, a ``FoldedNeuron``'s inner LIF left out."""
    inner = {id(m.neuron) for m in model.modules() if isinstance(m, FoldedNeuron)}
    return {p: m for p, m in model.named_modules() if is_neuron(m) and id(m) not in inner}


def steps_of(module: nn.Module, out: torch.Tensor | tuple) -> torch.Tensor:
    """A neuron's output of one call as ``[steps, B, ...]``."""
    spikes = (out[0] if isinstance(out, tuple) else out).detach()
    if isinstance(module, FoldedNeuron):
        return unfold_time(spikes, module.T)
    if getattr(module, "step_mode", "s") == "m":  # SpikingJelly, multi-step
        return spikes
    return spikes.unsqueeze(0)  # one step per call


class FiringRates:
    """Forward hooks accumulating spike counts ``[T]`` per neuron layer (``remove()`` them)."""

    def __init__(self, model: nn.Module) -> None:
        self.spikes: dict[str, list[float]] = {}  # per step: spikes
        self.counts: dict[str, list[float]] = {}  # per step: neuron outputs
        self._step: dict[str, int] = {}  # the next step of each layer in this forward
        layers = neuron_layers(model)
        if not layers:
            raise ValueError(f"{type(model).__name__} has no spiking neurons to monitor")
        self._handles = [model.register_forward_pre_hook(lambda *_: self._step.clear())]
        self._handles += [m.register_forward_hook(self._hook(p)) for p, m in layers.items()]

    def _hook(self, name: str):
        def hook(module: nn.Module, _inputs: tuple, out: torch.Tensor | tuple) -> None:
            steps = steps_of(module, out)
            first = self._step.get(name, 0)
            self._step[name] = first + len(steps)
            spikes = self.spikes.setdefault(name, [])
            counts = self.counts.setdefault(name, [])
            for t, n in enumerate(steps.flatten(1).sum(1, dtype=torch.float64).tolist(), first):
                if t == len(spikes):
                    spikes.append(0.0)
                    counts.append(0.0)
                spikes[t] += n
                counts[t] += steps[0].numel()

        return hook

    def rates(self) -> dict[str, torch.Tensor]:
        """``{layer: [T]}`` mean firing rate per step over everything seen so far."""
        rates = {}
        for name, sums in self.spikes.items():  # float64: counts exact up to 2^53
            spikes, counts = torch.tensor([sums, self.counts[name]], dtype=torch.float64)
            rates[name] = spikes / counts
        return rates

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
