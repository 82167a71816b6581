"""Feature taps: capture module outputs by module path with forward hooks.

A tap spec is a module path (``"layer2"``, ``"layer2.1.act2"``) or an integer index into the
model's ordered stages (``model.stage_names``, inferred for a model that declares none: see
``models.contract.stage_names_of``; negative counts from the end).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from ..errors import ConfigError
from ..models.contract import stage_names_of

TapSpec = str | int


def resolve_tap(model: nn.Module, spec: TapSpec) -> str:
    """The module path a spec names; a clear error lists the valid ones."""
    stages = stage_names_of(model)
    if isinstance(spec, int) and not isinstance(spec, bool):
        if not stages:  # e.g. a net whose layers all sit under one child
            raise ConfigError(
                f"stage index {spec}: {type(model).__name__} has no stages to index; declare "
                "stage_names (module paths, in order) on it, or tap a module path"
            )
        if not -len(stages) <= spec < len(stages):
            raise ConfigError(f"stage index {spec} out of range: the model has stages {stages}")
        return stages[spec]
    paths = dict(model.named_modules())
    if spec not in paths or spec == "":
        candidates = [p for p in paths if p and p.count(".") <= 1]
        raise ConfigError(
            f"no module {spec!r} to tap in {type(model).__name__}; stages: {stages}; "
            f"module paths include: {', '.join(candidates[:40])}"
        )
    return str(spec)


def resolve_taps(model: nn.Module, specs: Sequence[TapSpec] | None) -> list[str]:
    """Resolve a list of specs; ``None`` means every stage of the model."""
    if specs is None:
        return stage_names_of(model)
    return [resolve_tap(model, s) for s in specs]


def feature_map_path(model: nn.Module) -> str:
    """The module whose output feeds the classifier's global pooling (the CAM feature map):
    the head's last module before ``pool`` if it has any (pre-activation nets), else the
    last stage (``ConfigError`` if the model has none)."""
    head = getattr(model, "head", None)
    if head is not None and hasattr(head, "pool"):
        before = []
        for name, _ in head.named_children():
            if name == "pool":
                break
            before.append(name)
        if before:
            return f"head.{before[-1]}"
    stages = stage_names_of(model)
    if not stages:
        raise ConfigError(
            f"{type(model).__name__} has no stages to take a feature map from: name the "
            "module path of its last convolutional map (or declare stage_names)"
        )
    return stages[-1]


class FeatureTaps:
    """Forward hooks on ``paths`` of ``model``; ``pop()`` returns and clears the captures of
    the model's last forward.

    A module that runs several times in one forward of the model (a student looping over its
    time steps, as snnTorch nets do) gives its outputs stacked, ``[runs, ...]``, with
    ``repeats="stack"``; ``runs`` holds how many times each ran. With ``"refuse"`` (a
    teacher's taps) that is an error. A capture that the model changes in place afterwards (a
    BN output that a residual sum or an in-place ReLU overwrites) raises an error at
    ``pop()``: tap the block or activation instead.
    """

    def __init__(
        self,
        model: nn.Module,
        paths: Sequence[str],
        repeats: Literal["stack", "refuse"] = "refuse",
    ) -> None:
        modules = dict(model.named_modules())
        self.owner = type(model).__name__
        self.paths = list(dict.fromkeys(paths))
        self.repeats = repeats
        self.runs: dict[str, int] = {}
        self._captures: dict[str, list[tuple[torch.Tensor, int]]] = {}
        self._handles = [modules[p].register_forward_hook(self._hook(p)) for p in self.paths]
        # a new forward of the model starts new captures (Rate-BP runs two passes: the last
        # counts; a block recomputed in backward is dropped)
        self._handles.append(model.register_forward_pre_hook(lambda *_: self._captures.clear()))

    def _hook(self, path: str):
        def hook(module: nn.Module, _inputs: tuple, output: Any) -> None:
            if not isinstance(output, torch.Tensor):
                raise ConfigError(
                    f"the tapped module {path!r} ({type(module).__name__}) returns a "
                    f"{type(output).__name__}, not a tensor (a neuron giving spikes and "
                    "membrane?): tap a module that returns one tensor"
                )
            self._captures.setdefault(path, []).append((output, output._version))

        return hook

    def pop(self) -> dict[str, torch.Tensor]:
        captures, self._captures = self._captures, {}
        missing = [p for p in self.paths if p not in captures]
        if missing:
            raise RuntimeError(f"feature taps {missing} did not run in the forward pass")
        changed = [p for p, outs in captures.items() if any(o._version != v for o, v in outs)]
        if changed:
            raise ConfigError(
                f"feature taps {changed} were overwritten in place by the model after they "
                "were captured (e.g. a BatchNorm output that a residual sum or in-place ReLU "
                "reuses); tap the enclosing block or the activation instead"
            )
        self.runs = {p: len(outs) for p, outs in captures.items()}
        repeated = {p: n for p, n in self.runs.items() if n > 1}
        if repeated and self.repeats == "refuse":
            raise ConfigError(
                f"{self.owner}'s feature taps ran several times in one forward ({repeated}); "
                "tap modules that run once"
            )
        return {
            p: outs[0][0] if len(outs) == 1 else torch.stack([o for o, _ in outs])
            for p, outs in captures.items()
        }

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
