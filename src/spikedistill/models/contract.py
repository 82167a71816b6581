"""The student contract: what a model offers so that every distillation method can use it.

A student is an ``nn.Module`` with (``Student``, a ``typing.Protocol``):

- ``spiking: bool``: an SNN (``True``) or an ANN;
- ``T: int``: time steps of an SNN (an ANN counts as ``T = 1``);
- ``forward(x, per_step=False)``: logits ``[B, K]`` (an SNN's mean over time), or the
  per-step logits ``[T, B, K]`` with ``per_step=True`` (SNNs only);
- ``stage_names: list[str]``: module paths of its stages, in order (the default feature taps:
  integer tap specs index them, ``None`` means all of them);
- ``feature_layout``: how a tapped module's output ``[..]`` carries time in an SNN:
  ``"folded"`` = ``[T*B, ...]`` (the zoo's models; a map computed once per sample may be
  ``[B, ...]``) or ``"time_first"`` = ``[T, B, ...]`` (SpikingJelly's multi-step layers).
  It is declared, not guessed from shapes: ``[T*B, ...]`` and ``[T, B, ...]`` cannot be told
  apart from a shape alone when ``T == B``.

A plain ``nn.Module`` may leave members out; they default to: ``spiking`` False, ``T`` 1,
``stage_names`` ``infer_stage_names(model)``, ``feature_layout`` ``"folded"``. So a plain ANN
is a student as it is; an SNN declares ``spiking``, ``T`` and ``per_step`` (or is wrapped by
``models.adapter.SpikingStudent``). An ANN's tapped maps are ``[B, ...]`` whatever its layout.
"""

from __future__ import annotations

import inspect
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from ..errors import ConfigError
from ..spiking import LIF, FoldedNeuron

FeatureLayout = Literal["folded", "time_first"]
FEATURE_LAYOUTS: tuple[str, ...] = ("folded", "time_first")

# ANN activations that end a stage (an ANN's stages when it has no spiking neurons)
ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
)


@runtime_checkable
class Student(Protocol):
    """The full student contract (see the module docstring). ``isinstance(m, Student)``
    checks that the members exist; zoo models and ``SpikingStudent`` have them all."""

    spiking: bool
    T: int
    stage_names: list[str]
    feature_layout: FeatureLayout

    def forward(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor: ...


def batch_size_of(x: torch.Tensor) -> int:
    """The samples in an input batch: images ``[B, C, H, W]``, or event frames, which come
    time-first, ``[T, B, C, H, W]``."""
    return x.shape[1] if x.dim() == 5 else x.shape[0]


def is_spiking(model: nn.Module) -> bool:
    return bool(getattr(model, "spiking", False))


def time_steps(model: nn.Module) -> int:
    """``model.T`` for an SNN (an integer >= 1), 1 for an ANN."""
    if not is_spiking(model):
        return 1
    steps = getattr(model, "T", None)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ConfigError(
            f"{type(model).__name__} says spiking=True, so it needs T: an integer >= 1 "
            f"(time steps), got {steps!r}"
        )
    return steps


def feature_layout_of(model: nn.Module) -> FeatureLayout:
    """The declared ``feature_layout`` (``"folded"`` when absent), checked."""
    layout = getattr(model, "feature_layout", "folded")
    if layout not in FEATURE_LAYOUTS:
        raise ConfigError(
            f"{type(model).__name__}.feature_layout must be one of {FEATURE_LAYOUTS}, "
            f"got {layout!r}"
        )
    return layout


def stage_names_of(model: nn.Module) -> list[str]:
    """The declared ``stage_names``, else ``infer_stage_names(model)``."""
    names = getattr(model, "stage_names", None)
    return list(names) if names is not None else infer_stage_names(model)


def is_neuron(module: nn.Module) -> bool:
    """A spiking neuron: ours, one with a ``v_threshold`` and a ``reset()`` (SpikingJelly), or
    one with a ``threshold`` and a ``reset_mechanism`` (snnTorch)."""
    if isinstance(module, (LIF, FoldedNeuron)):
        return True
    if hasattr(module, "threshold") and hasattr(module, "reset_mechanism"):
        return True
    return hasattr(module, "v_threshold") and callable(getattr(module, "reset", None))


def other_neurons(model: nn.Module) -> str | None:
    """The class names of ``model``'s neurons (``"LIFNode"``) when none is spikedistill's,
    else ``None`` (ours, or no neurons)."""
    if any(isinstance(m, (LIF, FoldedNeuron)) for m in model.modules()):
        return None
    return ", ".join(sorted({type(m).__name__ for m in model.modules() if is_neuron(m)})) or None


def _contains(module: nn.Module, test) -> bool:
    return any(test(m) for m in module.modules())


def infer_stage_names(model: nn.Module) -> list[str]:
    """Stages of a model that does not declare them: its top-level children, in order, up to
    the first one that is or holds an ``nn.Linear`` (the classifier), keeping those that hold
    a spiking neuron or an ANN activation module (``ACTIVATIONS``); if none does, those that
    hold a convolution. A stem counts as a stage; a flat ``nn.Sequential`` gives its
    activation layers. Declare ``stage_names`` when this is not what you want."""
    children: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if _contains(child, lambda m: isinstance(m, nn.Linear)):
            break
        children.append((name, child))
    for test in (
        lambda m: is_neuron(m) or isinstance(m, ACTIVATIONS),
        lambda m: isinstance(m, _ConvNd),
    ):
        found = [name for name, child in children if _contains(child, test)]
        if found:
            return found
    return []


#: how a net of another library becomes a student
WRAP_HINT = (
    "a SpikingJelly net is wrapped by spikedistill.interop.spikingjelly.as_student(net, T); "
    "an own net declares spiking = True and T, and its forward takes per_step"
)


def check_student(model: nn.Module) -> None:
    """Raise ``ConfigError`` unless ``model`` meets the contract (with the defaults above)."""
    time_steps(model)
    feature_layout_of(model)
    name = type(model).__name__
    if not is_spiking(model):
        neurons = [p for p, m in model.named_modules() if is_neuron(m)]
        if neurons:
            raise ConfigError(
                f"{name} holds spiking neurons ({', '.join(neurons[:2])}) but does not say "
                f"spiking = True, so it would train as an ANN: {WRAP_HINT}"
            )
        return
    params = inspect.signature(model.forward).parameters
    if "per_step" not in params and not any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    ):
        raise ConfigError(
            f"{name} says spiking=True, so its forward must take per_step (per_step=True -> "
            "logits [T, B, K]; a net looping over its steps stacks its step logits), or be "
            "wrapped in spikedistill.models.adapter.SpikingStudent"
        )


def check_logits(model: nn.Module, out: object, batch: int, per_step: bool = False) -> None:
    """``ConfigError`` unless ``out``, what ``model(x)`` (``per_step``: ``model(x,
    per_step=True)``) returned for ``batch`` samples, is logits ``[B, K]`` (``[T, B, K]`` or
    ``[1, B, K]`` per step)."""
    name, call = type(model).__name__, "(x, per_step=True)" if per_step else "(x)"
    if not isinstance(out, torch.Tensor):
        what = f"a {type(out).__name__}" + (f" of {len(out)}" if isinstance(out, tuple) else "")
        raise ConfigError(
            f"{name}{call} returned {what}, not logits: a student returns one tensor (not, "
            "as snnTorch examples do, its spike and membrane records)"
        )
    dims, batch_dim = (3, 1) if per_step else (2, 0)
    if out.dim() != dims or out.shape[batch_dim] != batch:
        want = "[T, B, K] (or [1, B, K])" if per_step else "[B, K] (an SNN's mean over time)"
        raise ConfigError(
            f"{name}{call} gives shape {tuple(out.shape)} for {batch} samples; a student's "
            f"logits are {want}"
        )
