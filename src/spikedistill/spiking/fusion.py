"""Finding the (convolution ->) BatchNorm -> neuron units of any model (``norm_lif``).

A unit runs fused (``BatchNormLIF``: less memory, fewer passes) when the code that calls it goes
through ``conv_norm_act`` / ``norm_act``. Zoo blocks do, and so does ``FusedSequential``, an
``nn.Sequential`` that runs its layers with ``run_layers``. A module class that routes its
BatchNorm + neuron pairs through those calls says so with ``fuses_units = True``.

``fuse_units(model)`` makes every plain ``nn.Sequential`` of a model that holds such a unit a
``FusedSequential`` (the same object, modules and state dict; only the class changes), and
warns once, naming them, about the BatchNorms that sit beside a spikedistill neuron in a module
whose own ``forward`` may not fuse them (a user's block that calls ``self.bn`` and ``self.act``
itself): those run unfused, as written.
"""

from __future__ import annotations

import itertools
import warnings

import torch
from torch import nn

from .layers import FoldedNeuron
from .norm_lif import Layer, layer_steps, run_layers, runs_as_written

_BatchNorm = nn.modules.batchnorm._BatchNorm


class FusedSequential(nn.Sequential):
    """``nn.Sequential`` (same modules, same state dict) that runs its (convolution,)
    BatchNorm + activation units through ``conv_norm_act`` / ``norm_act`` (``run_layers``)."""

    fuses_units = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_layers(list(self), x)


def inline_steps(stage: nn.Module) -> list[Layer] | None:
    """The ``layer_steps`` of a plain ``FusedSequential`` stage, for a caller to run one by one
    (so the stage input is freed after its first layer, as when the stage itself holds it not),
    or None when the stage must be called as a module (hooks, a patched forward, a subclass)."""
    if type(stage) is not FusedSequential or not runs_as_written(stage):
        return None
    return layer_steps(list(stage))


def _has_unit(layers: list[nn.Module]) -> bool:
    """Whether a BatchNorm is directly followed by a spikedistill neuron in ``layers``."""
    return any(
        isinstance(a, _BatchNorm) and isinstance(b, FoldedNeuron)
        for a, b in itertools.pairwise(layers)
    )


def unfused_norms(model: nn.Module) -> list[str]:
    """Names of the BatchNorms that may run unfused although a spikedistill neuron sits beside
    them: in a ``FusedSequential``, those not directly followed by the activation; in any
    other module that holds a neuron and does not declare ``fuses_units``, all of them."""
    names = []
    for prefix, m in model.named_modules():
        children = list(m.named_children())
        if not any(isinstance(c, FoldedNeuron) for _, c in children):
            continue
        dot = f"{prefix}." if prefix else ""
        if type(m) is FusedSequential:
            after = [c for _, c in children[1:]] + [None]
            names += [
                dot + k
                for (k, c), nxt in zip(children, after, strict=True)
                if isinstance(c, _BatchNorm) and not isinstance(nxt, FoldedNeuron)
            ]
        elif not getattr(type(m), "fuses_units", False):
            names += [dot + k for k, c in children if isinstance(c, _BatchNorm)]
    return names


def fuse_units(model: nn.Module) -> list[str]:
    """Run the units of ``model``'s plain ``nn.Sequential`` containers fused (they become
    ``FusedSequential``); returns their names (``Sequential``: ``model`` itself). Warns about
    ``unfused_norms``."""
    fused, kind = [], type(model).__name__
    for name, m in model.named_modules():
        if type(m) is nn.Sequential and _has_unit(list(m)):
            fused.append(name or "Sequential")  # the model itself
            m.__class__ = FusedSequential
    unfused = unfused_norms(model)
    if unfused:
        warnings.warn(
            f"{kind}: the BatchNorms {unfused} may run unfused from the neuron beside them "
            "(more memory and time, the same results). In an nn.Sequential, put the neuron "
            "directly after the BatchNorm; in a module of your own, call the pair through "
            "spikedistill.spiking.conv_norm_act / norm_act and set fuses_units = True on its "
            "class",
            stacklevel=2,
        )
    return fused
