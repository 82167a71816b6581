"""``SpikingStudent``: any multi-step SNN (a SpikingJelly net, your own) as a student.

The wrapped ``module`` maps a sequence ``[T, B, ...]`` to per-step logits ``[T, B, K]``
(``per_step_output=True``, SpikingJelly's multi-step mode) or to logits ``[B, K]`` already
averaged over time (``per_step_output=False``). The adapter gives it the student contract
(``models.contract``): ``spiking = True``, ``T``, ``stage_names``, ``feature_layout`` and
``forward(x, per_step=False)``.

Per forward: stateful modules are reset (every submodule with a ``reset()`` method, the rule
of SpikingJelly's ``functional.reset_net``; no import of SpikingJelly), a static input of
``static_ndim`` dimensions (``[B, C, H, W]``) is repeated over ``T`` (direct encoding), a
sequence ``[T, B, ...]`` is passed as it is, and the mean over time (``[B, K]``) or the
per-step logits (``[T, B, K]``) come back.

Module paths: the wrapped net sits at ``module``, so its ``layer1`` is ``module.layer1`` for
feature taps (``stage_names`` given to the adapter are paths inside ``module``; the adapter's
``stage_names`` carry the prefix). Checkpoints of the adapter have ``module.`` keys.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .contract import FEATURE_LAYOUTS, FeatureLayout, infer_stage_names

PREFIX = "module"


def reset_states(module: nn.Module) -> None:
    """Call ``reset()`` on every submodule that has one (SpikingJelly's ``reset_net`` rule)."""
    for m in module.modules():
        reset = getattr(m, "reset", None)
        if callable(reset):
            reset()


def single_step_modules(module: nn.Module) -> list[str]:
    """Paths of submodules in SpikingJelly's single-step mode (``step_mode == "s"``)."""
    return [
        name or "<root>"
        for name, m in module.named_modules()
        if getattr(m, "step_mode", None) == "s"
    ]


class SpikingStudent(nn.Module):
    """``SpikingStudent(module, T, stage_names=None, feature_layout="time_first",
    per_step_output=True, static_ndim=4)``; see the module docstring.

    ``stage_names``: module paths inside ``module`` (``None``: ``infer_stage_names(module)``,
    the top-level children holding neurons before the classifier). ``feature_layout``: how the
    net's tapped outputs carry time, ``"time_first"`` ``[T, B, ...]`` (SpikingJelly multi-step
    layers) or ``"folded"`` ``[T*B, ...]``. With ``per_step_output=False``,
    ``forward(x, per_step=True)`` gives the mean as a single step, ``[1, B, K]``.
    """

    spiking = True

    def __init__(
        self,
        module: nn.Module,
        T: int,
        stage_names: list[str] | None = None,
        feature_layout: FeatureLayout = "time_first",
        per_step_output: bool = True,
        static_ndim: int = 4,
    ) -> None:
        super().__init__()
        if feature_layout not in FEATURE_LAYOUTS:
            raise ConfigError(
                f"feature_layout must be one of {FEATURE_LAYOUTS}, got {feature_layout!r}"
            )
        single = single_step_modules(module)
        if single:
            raise ConfigError(
                f"SpikingStudent runs the whole sequence [T, B, ...] in one call, but "
                f"{', '.join(single[:5])} are in single-step mode: build the net with "
                "step_mode='m' or call "
                "spikingjelly.activation_based.functional.set_step_mode(net, 'm')"
            )
        self.module = module
        self.T = T
        self.feature_layout = feature_layout
        self.per_step_output = per_step_output
        self.static_ndim = static_ndim
        names = infer_stage_names(module) if stage_names is None else list(stage_names)
        self.stage_names = [self._check_path(n) for n in names]

    def _check_path(self, name: str) -> str:
        paths = dict(self.module.named_modules())
        if not name or name not in paths:
            raise ConfigError(
                f"stage {name!r} is not a module path of {type(self.module).__name__}; "
                f"top-level children: {[n for n, _ in self.module.named_children()]}"
            )
        return f"{PREFIX}.{name}"

    @property
    def T(self) -> int:
        return self._T

    @T.setter
    def T(self, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"number of time steps T must be an integer >= 1, got {value!r}")
        self._T = value

    def sequence(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, ...]`` (``static_ndim`` dims) -> repeated ``[T, B, ...]``; ``[T, B, ...]`` kept."""
        if x.dim() == self.static_ndim:
            return x.unsqueeze(0).repeat(self.T, *([1] * x.dim()))
        if x.dim() == self.static_ndim + 1:
            if x.shape[0] != self.T:
                raise ConfigError(
                    f"input has {x.shape[0]} time steps (dim 0 of {tuple(x.shape)}) but the "
                    f"student runs T={self.T}; set student.T = {x.shape[0]}"
                )
            return x
        raise ConfigError(
            f"SpikingStudent input must have {self.static_ndim} dims (static, repeated over T) "
            f"or {self.static_ndim + 1} ([T, B, ...]), got shape {tuple(x.shape)}"
        )

    def step_logits(self, out: torch.Tensor, batch: int) -> torch.Tensor:
        """The wrapped net's output as ``[T', B, K]`` (``T' = 1`` for a ``[B, K]`` output)."""
        if self.per_step_output:
            if out.dim() != 3 or out.shape[:2] != (self.T, batch):
                raise ConfigError(
                    f"the wrapped net should return per-step logits [T={self.T}, B={batch}, K], "
                    f"got {tuple(out.shape)} (per_step_output=False if it returns [B, K])"
                )
            return out
        if out.dim() != 2 or out.shape[0] != batch:
            raise ConfigError(
                f"the wrapped net should return logits [B={batch}, K], got {tuple(out.shape)} "
                "(per_step_output=True if it returns [T, B, K])"
            )
        return out.unsqueeze(0)

    def forward(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        reset_states(self.module)
        seq = self.sequence(x)
        steps = self.step_logits(self.module(seq), seq.shape[1])
        return steps if per_step else steps.mean(0)

    def extra_repr(self) -> str:
        return (
            f"T={self.T}, feature_layout={self.feature_layout!r}, "
            f"per_step_output={self.per_step_output}, stage_names={self.stage_names}"
        )
