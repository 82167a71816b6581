"""FitNet-style hint: regress one student feature map onto one teacher feature map.

``L = weight * mean( (R(s) - a)^2 )`` with ``s`` the student map averaged over time (its firing
rate for spiking maps; ``time_reduce="per_step"`` regresses every step and averages the
losses), ``R`` = 1x1 conv + BN from the student's to the teacher's channels, and the larger of
the two maps adaptive-average-pooled to the smaller spatial size.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..typed import Weight
from .base import DistillBatch, DistillMethod, register_method
from .taps import TapSpec, resolve_tap

TimeReduce = Literal["mean", "per_step"]  # regress the rate, or every step (averaged)


def match_spatial(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive-average-pool the larger of two ``[..., H, W]`` maps to the other's size."""
    if a.shape[-2:] == b.shape[-2:]:
        return a, b
    if a.shape[-1] > b.shape[-1]:
        return F.adaptive_avg_pool2d(a.flatten(0, -4), b.shape[-2:]).view(
            *a.shape[:-2], *b.shape[-2:]
        ), b
    return a, F.adaptive_avg_pool2d(b.flatten(0, -4), a.shape[-2:]).view(
        *b.shape[:-2], *a.shape[-2:]
    )


@register_method("fitnet")
class FitNet(DistillMethod):
    """Options:

    - ``student_tap`` / ``teacher_tap``: the student's / the teacher's feature map (a module
      path or a stage index; -1 = the last stage);
    - ``weight``: the term's weight;
    - ``time_reduce``: ``mean`` regresses the student's map averaged over time (its rate),
      ``per_step`` every step's map (the losses averaged).
    """

    name = "fitnet"

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        student_tap: TapSpec = -1,
        teacher_tap: TapSpec = -1,
        weight: Weight = 1.0,
        time_reduce: TimeReduce = "mean",
    ) -> None:
        super().__init__()
        self.student_path = resolve_tap(student, student_tap)
        self.teacher_path = resolve_tap(teacher, teacher_tap)
        self.weight, self.time_reduce = weight, time_reduce
        self.regressor: nn.Module | None = None

    def student_taps(self) -> list[str]:
        return [self.student_path]

    def teacher_taps(self) -> list[str]:
        return [self.teacher_path]

    def build(self, batch: DistillBatch) -> None:
        s = batch.student_features[self.student_path]
        a = batch.teacher_features[self.teacher_path]
        if s.dim() != 5 or a.dim() != 4:
            raise ConfigError(
                f"fitnet needs convolutional maps; got student {tuple(s.shape)} "
                f"and teacher {tuple(a.shape)}"
            )
        self.regressor = nn.Sequential(
            nn.Conv2d(s.shape[2], a.shape[1], 1, bias=False), nn.BatchNorm2d(a.shape[1])
        ).to(s.device)

    def forward(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        s = batch.student_features[self.student_path]  # [T, B, C, H, W]
        a = batch.teacher_features[self.teacher_path]  # [B, C', H', W']
        if self.time_reduce == "mean":
            s = s.mean(0, keepdim=True)
        steps = s.shape[0]
        out = self.regressor(s.flatten(0, 1)).view(steps, -1, *a.shape[1:2], *s.shape[-2:])
        out, target = match_spatial(out, a.unsqueeze(0).expand(steps, *a.shape))
        return {"fitnet": self.weight * F.mse_loss(out, target)}
