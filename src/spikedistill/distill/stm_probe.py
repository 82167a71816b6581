"""STM of a trained student against its teacher on one fixed batch (methods.md §2.7).

Pairing: layer-wise (stage ``i`` of the student with the teacher stage at the same relative
depth) or, for a SASTC run, its attention averaged over the batch.
"""

from __future__ import annotations

import torch
from torch import nn

from ..metrics.stm import layerwise_pairs, sastc_pairs, stm_score
from ..spiking import unfold_time
from .base import DistillBatch
from .taps import FeatureTaps


@torch.no_grad()
def stm_probe(
    student: nn.Module,
    teacher: nn.Module,
    x: torch.Tensor,
    sastc: nn.Module | None = None,
    similarity_kind: str = "normalized",
    distance: str = "squared",
) -> float:
    """STM on batch ``x``; with a SASTC method, its taps and attention define the pairing."""
    s_paths = sastc.student_taps() if sastc is not None else list(student.stage_names)
    t_paths = sastc.teacher_taps() if sastc is not None else list(teacher.stage_names)
    s_taps, t_taps = FeatureTaps(student, s_paths), FeatureTaps(teacher, t_paths)
    modes = student.training, teacher.training
    student.eval()
    teacher.eval()
    try:
        teacher_logits = teacher(x)
        steps = student(x, per_step=True) if getattr(student, "spiking", False) else None
        steps = student(x).unsqueeze(0) if steps is None else steps
        T = steps.shape[0]
        s_feats = {
            k: unfold_time(v, T) if T > 1 or getattr(student, "spiking", False) else v[None]
            for k, v in s_taps.pop().items()
        }
        t_feats = t_taps.pop()
    finally:
        s_taps.remove()
        t_taps.remove()
        student.train(modes[0])
        teacher.train(modes[1])
    if sastc is not None:
        batch = DistillBatch(
            y=None,
            student_logits=steps.mean(0),
            step_logits=steps,
            teacher_logits=teacher_logits,
            student_features=s_feats,
            teacher_features=t_feats,
            teacher=teacher,
        )
        weights = sastc_pairs(sastc.attention(batch))
    else:
        weights = layerwise_pairs(len(s_paths), len(t_paths))
    return stm_score(
        [s_feats[p] for p in s_paths],
        [t_feats[p] for p in t_paths],
        weights,
        similarity_kind=similarity_kind,
        distance=distance,
    )
