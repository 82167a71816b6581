r"""Operations and energy of a network's forward pass, per sample.

For every convolution and linear layer a forward hook counts its **dense operations** per
sample (all the time steps it ran):

- convolution: ``C_out H_out W_out * (C_in / groups) k_h k_w`` per step,
- linear: ``out_features * in_features`` per step.

A layer that first runs after a spiking neuron in the same forward (``firing.neuron_layers``:
ours, SpikingJelly's or snnTorch's) is **fed by spikes**: its synaptic
operations are ``SOP = dense ops * r``, ``r`` the mean of its input (the input firing rate;
for average-pooled spikes the pooled rate), i.e. dense ops per step ``* r * T``. Layers before
the first neuron (the encoding convolution on real-valued input) and every layer of an ANN count
multiply-accumulates, ``MAC = dense ops``. The energy is

    E = E_AC * SOPs + E_MAC * MACs,

``E_AC = 0.9 pJ`` and ``E_MAC = 4.6 pJ`` by default (32-bit float add and multiply-add in 45 nm
CMOS, Horowitz 2014; presets ``fp16`` 0.4 / 1.5 pJ and ``int8`` 0.03 / 0.23 pJ). Event-frame
input counts as real-valued for the first layer (a frame holds event counts, not 0/1 spikes).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ConfigError
from ..models.contract import batch_size_of
from .firing import neuron_layers
from .passes import monitored_pass

ENERGY_PRESETS = {"fp32": (0.9, 4.6), "fp16": (0.4, 1.5), "int8": (0.03, 0.23)}  # (AC, MAC) pJ


@dataclass
class LayerOps:
    """Per-sample counts of one layer: ``kind`` is ``MAC`` or ``SOP``."""

    kind: str
    dense: float = 0.0  # dense operations per sample
    ops: float = 0.0  # MACs or SOPs per sample
    calls: int = 0

    @property
    def input_rate(self) -> float | None:
        return self.ops / self.dense if self.kind == "SOP" and self.dense else None


@dataclass
class OpsReport:
    layers: dict[str, LayerOps] = field(default_factory=dict)
    e_ac: float = 0.9
    e_mac: float = 4.6

    @property
    def macs(self) -> float:
        return sum(v.ops for v in self.layers.values() if v.kind == "MAC")

    @property
    def sops(self) -> float:
        return sum(v.ops for v in self.layers.values() if v.kind == "SOP")

    @property
    def dense(self) -> float:
        return sum(v.dense for v in self.layers.values())

    @property
    def energy_pj(self) -> float:
        """Energy per sample in picojoules."""
        return self.e_ac * self.sops + self.e_mac * self.macs

    def summary(self) -> dict[str, float]:
        return {
            "dense_ops": self.dense,
            "macs": self.macs,
            "sops": self.sops,
            "energy_mj": self.energy_pj * 1e-9,
        }


def energy_constants(preset: str = "fp32", e_ac: float | None = None, e_mac: float | None = None):
    """``(E_AC, E_MAC)`` in pJ from a preset, with either constant overridden."""
    if preset not in ENERGY_PRESETS:
        raise ConfigError(f"unknown energy preset {preset!r}; valid: {', '.join(ENERGY_PRESETS)}")
    ac, mac = ENERGY_PRESETS[preset]
    return (ac if e_ac is None else e_ac), (mac if e_mac is None else e_mac)


class OpCounter:
    """Hooks on ``model``: per-sample dense ops, MACs and SOPs of every conv/linear layer."""

    def __init__(self, model: nn.Module) -> None:
        self.report = OpsReport()
        self._batch = 0
        self._spiking_seen = False
        self._samples = 0
        self._handles = [model.register_forward_pre_hook(self._start)]
        for m in neuron_layers(model).values():
            self._handles.append(m.register_forward_pre_hook(self._neuron))
        for name, m in model.named_modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                self._handles.append(m.register_forward_hook(self._layer(name)))

    def _start(self, _module: nn.Module, inputs: tuple) -> None:
        x = inputs[0]
        # [T, B, ...] event frames of an SNN, else [B, ...]
        self._batch = batch_size_of(x)
        self._samples += self._batch
        self._spiking_seen = False

    def _neuron(self, _module: nn.Module, _inputs: tuple) -> None:
        self._spiking_seen = True

    def _layer(self, name: str):
        def hook(m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            x = inputs[0]
            if isinstance(m, nn.Linear):
                dense = out.numel() * m.in_features
            else:
                dense = out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)
            # a layer's kind is that of its first call: a net looping over time steps runs
            # its encoding layer again after neurons fired
            entry = self.report.layers.setdefault(
                name, LayerOps("SOP" if self._spiking_seen else "MAC")
            )
            rate = float(x.detach().float().mean()) if entry.kind == "SOP" else 1.0
            entry.dense += dense  # totals; divided by the samples in ``result``
            entry.ops += dense * rate
            entry.calls += 1

        return hook

    def result(self, e_ac: float = 0.9, e_mac: float = 4.6) -> OpsReport:
        """Counts per sample over every forward seen."""
        n = max(self._samples, 1)
        layers = {
            name: LayerOps(v.kind, v.dense / n, v.ops / n, v.calls)
            for name, v in self.report.layers.items()
        }
        return OpsReport(layers, e_ac, e_mac)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def count_ops(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str = "cpu",
    e_ac: float = 0.9,
    e_mac: float = 4.6,
) -> OpsReport:
    """MACs, SOPs and energy per sample of ``model`` (eval mode) over ``batches``."""
    counter = OpCounter(model)
    monitored_pass(model, counter, batches, device)
    return counter.result(e_ac, e_mac)
