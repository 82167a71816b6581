"""Training objectives: a batch -> the student's logits and its named loss terms.

An objective is an ``nn.Module`` so that trainable extras (regressors, attention MLPs of a
distillation method) are optimised with the student and saved in checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn


class CrossEntropyObjective(nn.Module):
    """Plain supervised training: ``{"ce": CE(student(x), y)}`` (``index``, the batch's
    dataset indices, is unused)."""

    def forward(
        self,
        student: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = student(x)
        return logits, {"ce": nn.functional.cross_entropy(logits, y)}
