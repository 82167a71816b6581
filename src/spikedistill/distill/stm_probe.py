"""STM of a trained student against its teacher on one fixed batch (docs/methods.md §2.7).

Pairing: layer-wise (stage ``i`` of the student with the teacher stage at the same relative
depth) or, for a SASTC run, its attention averaged over the batch. Definition: ``variant``
(``"paper"``, the default, or the former ``"normalized"``; ``metrics.stm.STM_VARIANTS``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..metrics.stm import layerwise_pairs, sastc_pairs, stm_score
from .base import DistillBatch
from .objective import student_forward, time_first_features
from .taps import FeatureTaps


@torch.no_grad()
def probe_batch(
    student: nn.Module,
    teacher: nn.Module,
    x: torch.Tensor,
    student_paths: list[str],
    teacher_paths: list[str],
) -> DistillBatch:
    """Eval-mode logits and tapped features of student and teacher on ``x`` (modes restored)."""
    s_taps = FeatureTaps(student, student_paths, repeats="stack")
    t_taps = FeatureTaps(teacher, teacher_paths)
    modes = student.training, teacher.training
    student.eval()
    teacher.eval()
    try:
        teacher_logits = teacher(x)
        steps = student_forward(student, x)
        s_feats = s_taps.pop()  # sets s_taps.runs
        s_feats = time_first_features(s_feats, student, steps.shape[1], s_taps.runs)
        t_feats = t_taps.pop()
    finally:
        s_taps.remove()
        t_taps.remove()
        student.train(modes[0])
        teacher.train(modes[1])
    return DistillBatch(
        y=None,
        student_logits=steps.mean(0),
        step_logits=steps,
        teacher_logits=teacher_logits,
        student_features=s_feats,
        teacher_features=t_feats,
        teacher=teacher,
    )


@torch.no_grad()
def stm_probe(
    student: nn.Module,
    teacher: nn.Module,
    x: torch.Tensor,
    sastc: nn.Module | None = None,
    similarity_kind: str | None = None,
    distance: str = "squared",
    *,
    variant: str = "paper",
) -> float:
    """STM on batch ``x``; with a SASTC method, its taps and attention define the pairing.
    ``variant`` picks the definition (``stm_score``; ``similarity_kind`` overrides its Gram)."""
    s_paths = sastc.student_taps() if sastc is not None else list(student.stage_names)
    t_paths = sastc.teacher_taps() if sastc is not None else list(teacher.stage_names)
    batch = probe_batch(student, teacher, x, s_paths, t_paths)
    if sastc is not None:
        weights = sastc_pairs(sastc.attention(batch))
    else:
        weights = layerwise_pairs(len(s_paths), len(t_paths))
    return stm_score(
        [batch.student_features[p] for p in s_paths],
        [batch.teacher_features[p] for p in t_paths],
        weights,
        similarity_kind=similarity_kind,
        distance=distance,
        variant=variant,
    )
