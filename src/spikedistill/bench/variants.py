"""What ``spikedistill bench`` compares: one training step (and one inference) per variant.

- ``limit``: the same architecture as an ANN on batch ``T*B``, the convolutions that an SNN
  step cannot avoid;
- ``bptt``: our SNN trained by backprop through time, neurons on ``spec.backend``;
- ``bptt_checkpoint``: the same with per-block activation checkpointing;
- ``rate``: our SNN trained by rate-based backprop (inference is the ``bptt`` model's);
- ``spikingjelly``: the SNN with SpikingJelly's ``LIFNode`` (multi-step, on the implementation
  SpikingJelly selects: its fastest available, recorded as the variant's ``neurons``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..engine.setup import first_forward, probe_forward
from ..errors import ConfigError, first_line
from ..models import build_model
from ..registry import Registry
from ..spiking import set_backend
from .timing import train_step

Step = Callable[[], None]


@dataclass(frozen=True)
class BenchSpec:
    """One point of the benchmark: a model, its input ``[B, C, size, size]`` and ``T``."""

    model: str = "resnet19"
    T: int = 4
    batch: int = 16
    size: int = 32
    in_channels: int = 3
    num_classes: int = 10
    neuron: str = "tdbn"
    backend: str = "torch"  # neuron backend of our variants (spiking.kernels)
    stored_steps: int = 4  # Rate-BP: steps' worth of float pre-activation a layer may hold
    options: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"

    def replace(self, **changes: Any) -> BenchSpec:
        return dataclasses.replace(self, **changes)

    def inputs(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, self.in_channels, self.size, self.size, generator=g)
        y = torch.randint(0, self.num_classes, (batch,), generator=g)
        return x.to(self.device), y.to(self.device)

    def build(self, spiking: bool) -> nn.Module:
        """The model, its neurons on ``backend``."""
        torch.manual_seed(0)
        kwargs = dict(self.options, in_channels=self.in_channels)
        if spiking:
            kwargs.update(spiking=True, T=self.T, neuron=self.neuron)
        model = build_model(self.model, self.num_classes, **kwargs).to(self.device)
        set_backend(model, self.backend, self.device)
        return model


def check_spec(spec: BenchSpec) -> None:
    """Build the SNN and run one sample through it (on torch neurons, nothing to compile): a
    bad model, option or input size is one ``ConfigError`` before anything is timed."""
    where = f"{spec.model} with options {spec.options}"
    try:
        model = spec.replace(backend="torch").build(spiking=True)
    except (TypeError, ValueError) as err:  # e.g. an option of the wrong type
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"cannot build {where}: {first_line(err)}") from None
    x, _ = spec.inputs(1)
    with first_forward(where, x):  # the input is too small, ...
        probe_forward(model, x)


@dataclass
class Variant:
    train: Step
    infer: Step | None  # None: the same forward as another variant
    neurons: str = ""  # what runs its neurons: our backend, SpikingJelly's implementation


def _inference(model: nn.Module, x: torch.Tensor, after: Step | None = None) -> Step:
    def step() -> None:
        model.eval()
        with torch.no_grad():
            model(x)
        model.train()
        if after is not None:
            after()

    return step


VARIANTS: Registry[Callable[[BenchSpec], Variant]] = Registry("benchmark variant")


@VARIANTS.register("limit")
def _limit(spec: BenchSpec) -> Variant:
    model = spec.build(spiking=False)
    x, y = spec.inputs(spec.T * spec.batch)
    return Variant(train_step(model, x, y), _inference(model, x))


@VARIANTS.register("bptt")
def _bptt(spec: BenchSpec) -> Variant:
    model = spec.build(spiking=True)
    x, y = spec.inputs(spec.batch)
    return Variant(train_step(model, x, y), _inference(model, x), spec.backend)


@VARIANTS.register("bptt_checkpoint")
def _bptt_checkpoint(spec: BenchSpec) -> Variant:
    train = _bptt(spec.replace(options={**spec.options, "checkpoint_blocks": True})).train
    return Variant(train, None, spec.backend)  # inference is the bptt model's


@VARIANTS.register("rate")
def _rate(spec: BenchSpec) -> Variant:
    from ..ratebp import RateBackprop

    model = spec.build(spiking=True)
    x, y = spec.inputs(spec.batch)
    forward = RateBackprop(model, spec.stored_steps)
    return Variant(train_step(model, x, y, forward=forward), None, spec.backend)


@VARIANTS.register("spikingjelly")
def _spikingjelly(spec: BenchSpec) -> Variant:
    from ..interop.spikingjelly import implementation, reset, use_spikingjelly_neurons

    model = use_spikingjelly_neurons(spec.build(spiking=True))
    x, y = spec.inputs(spec.batch)

    def after() -> None:
        reset(model)

    train = train_step(model, x, y, after=after)
    return Variant(train, _inference(model, x, after), implementation(model, spec.device))
