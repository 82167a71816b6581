"""Logit KD (Hinton et al.) on the time-averaged student logits.

``L_kd = weight * tau^2 * KL( softmax(z_A / tau) || softmax(z_S / tau) )`` (batchmean).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..typed import Positive, Weight
from .base import DistillBatch, DistillMethod, register_method


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """``tau^2 * KL(softmax(t / tau) || softmax(s / tau))``, mean over the batch."""
    log_p_s = F.log_softmax(student_logits / tau, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / tau, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * tau * tau


@register_method("kd")
class KD(DistillMethod):
    """Options:

    - ``tau``: the softmax temperature (> 0);
    - ``weight``: the term's weight.
    """

    name = "kd"

    def __init__(
        self, student: nn.Module, teacher: nn.Module, tau: Positive = 4.0, weight: Weight = 1.0
    ) -> None:
        super().__init__()
        self.tau, self.weight = tau, weight

    def forward(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        loss = kd_loss(batch.student_logits, batch.teacher_logits, self.tau)
        return {"kd": self.weight * loss}
