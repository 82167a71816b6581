"""Feature taps: capture module outputs by module path with forward hooks.

A tap spec is a module path (``"layer2"``, ``"layer2.1.act2"``) or an integer index into the
model's ordered stages (``model.stage_names``, inferred for a model that declares none: see
``models.contract.stage_names_of``; negative counts from the end).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..models.contract import stage_names_of

TapSpec = str | int


def resolve_tap(model: nn.Module, spec: TapSpec) -> str:
    """The module path a spec names; a clear error lists the valid ones."""
    stages = stage_names_of(model)
    if isinstance(spec, int) and not isinstance(spec, bool):
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
    """Forward hooks on ``paths`` of ``model``; ``pop()`` returns and clears the captures.

    A module that runs several times in one forward keeps its last output. A capture that
    the model changes in place afterwards (a BN output that a residual sum or an in-place
    ReLU overwrites) raises an error at ``pop()``: tap the block or activation instead.
    """

    def __init__(self, model: nn.Module, paths: Sequence[str]) -> None:
        modules = dict(model.named_modules())
        self.paths = list(dict.fromkeys(paths))
        self.outputs: dict[str, torch.Tensor] = {}
        self._versions: dict[str, int] = {}
        self._handles = [modules[p].register_forward_hook(self._hook(p)) for p in self.paths]

    def _hook(self, path: str):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            self.outputs[path] = output
            self._versions[path] = output._version

        return hook

    def pop(self) -> dict[str, torch.Tensor]:
        outputs, self.outputs = self.outputs, {}
        missing = [p for p in self.paths if p not in outputs]
        if missing:
            raise RuntimeError(f"feature taps {missing} did not run in the forward pass")
        changed = [p for p, out in outputs.items() if out._version != self._versions[p]]
        if changed:
            raise ConfigError(
                f"feature taps {changed} were overwritten in place by the model after they "
                "were captured (e.g. a BatchNorm output that a residual sum or in-place ReLU "
                "reuses); tap the enclosing block or the activation instead"
            )
        return outputs

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
