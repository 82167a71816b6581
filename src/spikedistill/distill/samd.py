"""SAMD: Saliency-scaled Activation Map Distillation (CKDSNN, "A Closer Look at KD in SNN
Training"), following the reference code's HEAD formulas.

For the student's feature map ``F_s`` ``[T, B, C, H, W]`` and the teacher's ``F_t``
``[B, C, H, W]`` (by default both taken at ``feature_map_path``: the input of the classifier's
global pooling):

- student spike activation map (SAM): ``A_s[b,h,w] = sum_t sum_c F_s[t,b,c,h,w]``;
- teacher class activation map (CAM): ``A_t[b,h,w] = ReLU(sum_c W[k_b, c] F_t[b,c,h,w])`` with
  ``k_b = argmax_k z_t[b,k]`` (the teacher's predicted class) and ``W`` the (detached) weight
  of the teacher's final linear layer (``teacher_fc``, by default ``head.fc``);
- saliency scaling ``M = (A - min A) / (max(A - min A) + 1e-3)``, with min and max over the
  whole batch tensor (``scaling="batch"``, the reference behaviour: a sample's map depends on
  the rest of the batch) or per sample (``scaling="sample"``);
- ``P = softmax_hw(M / tau) + 1e-10`` and
  ``L = weight * (1/B) sum_b sum_hw P_t (log P_t - log P_s)`` (no ``tau^2`` factor).

Gradient reaches the student only through ``P_s``. If the two maps differ in spatial size, the
larger one is adaptive-average-pooled to the smaller size (per axis, ``min`` of the two) before
the scaling; the reference only distils same-size maps.

The teacher must have a CAM: a zoo teacher's head must be global pooling + a single linear
layer ``fc`` over the feature map's channels (e.g. ``resnet19`` built with
``head_hidden=None``). Any other teacher names its CAM layers by module path:
``teacher_tap`` (the feature map ``[B, C, H, W]`` that feeds the global average pooling) and
``teacher_fc`` (the ``nn.Linear`` over those ``C`` channels that gives the logits). The
student needs only its feature map (``student_tap``; default: ``feature_map_path``, the last
stage of a non-zoo student).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..typed import Positive, Weight, coerce
from .base import DistillBatch, DistillMethod, register_method
from .taps import TapSpec, feature_map_path, resolve_tap

Scaling = Literal["batch", "sample"]  # min-max over the batch or per sample
SCALE_EPS = 1e-3  # denominator guard of the saliency scaling
PROB_EPS = 1e-10  # added to both spatial distributions


def _check_cam_teacher(teacher: nn.Module) -> None:
    """Raise ``ConfigError`` unless ``teacher.head`` is global pooling + one linear ``fc``."""
    hint = (
        "SAMD needs a teacher whose classifier is global pooling followed by one linear layer "
        "(head.pool -> head.fc) on the feature map's channels, so that a class activation map "
        "can be formed, e.g. resnet19 built with head_hidden=None, or convnet3 with "
        "head_pool=1"
    )
    head = getattr(teacher, "head", None)
    if head is None:
        raise ConfigError(f"{hint}; {type(teacher).__name__} has no 'head'")
    fc = getattr(head, "fc", None)
    if not isinstance(fc, nn.Linear):
        raise ConfigError(f"{hint}; the teacher's head has no linear layer 'fc'")
    hidden = [n for n, m in head.named_modules() if isinstance(m, nn.Linear) and m is not fc]
    if hasattr(head, "fc1") or hidden:
        names = ", ".join(hidden) or "fc1"
        raise ConfigError(f"{hint}; the teacher's head has a hidden linear layer ({names})")
    pool = getattr(head, "pool", None)
    is_global = False
    if isinstance(pool, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        size = pool.output_size
        is_global = tuple(size) == (1, 1) if isinstance(size, (tuple, list)) else size == 1
    if not is_global:
        raise ConfigError(f"{hint}; the teacher's head.pool is {pool!r}, not a global pooling")


def _teacher_cam_layers(
    teacher: nn.Module, teacher_tap: TapSpec | None, teacher_fc: str | None
) -> tuple[str, str]:
    """``(feature-map path, linear-classifier path)`` of the teacher's CAM: the given paths,
    or the zoo head's (``feature_map_path``, ``head.fc``) when ``teacher_fc`` is not given."""
    if teacher_fc is None:
        if not hasattr(teacher, "head"):
            raise ConfigError(
                f"samd needs the teacher's class activation map layers, and "
                f"{type(teacher).__name__} has no zoo head (head.pool -> head.fc): set "
                "distill.options.samd.teacher_tap (the module whose [B, C, H, W] output "
                "feeds the global average pooling) and teacher_fc (the final nn.Linear over "
                "those C channels), e.g. teacher_tap: layer4, teacher_fc: fc"
            )
        _check_cam_teacher(teacher)
        teacher_fc = "head.fc"
    elif teacher_tap is None:
        raise ConfigError(
            "samd teacher_fc is set, so teacher_tap must name the feature map it classifies "
            "(the module whose [B, C, H, W] output feeds the global average pooling)"
        )
    fc = dict(teacher.named_modules()).get(teacher_fc)
    if not isinstance(fc, nn.Linear):
        raise ConfigError(
            f"samd teacher_fc {teacher_fc!r} must name the teacher's final nn.Linear, got "
            f"{type(fc).__name__ if fc is not None else 'no module'}"
        )
    tap = feature_map_path(teacher) if teacher_tap is None else teacher_tap
    return resolve_tap(teacher, tap), teacher_fc


def _student_map(student: nn.Module) -> str:
    """The student's default SAM feature map, ``feature_map_path``; names the option if none."""
    try:
        return feature_map_path(student)
    except ConfigError as err:
        raise ConfigError(
            f"samd: set distill.options.samd.student_tap (the student's last convolutional "
            f"map, [T, B, C, H, W]): {err}"
        ) from None


def saliency_scale(a: torch.Tensor, scaling: Scaling = "batch") -> torch.Tensor:
    """``(A - min A) / (max(A - min A) + 1e-3)`` for maps ``[B, H, W]``; min/max over the whole
    tensor (``"batch"``) or over each sample's map (``"sample"``)."""
    if coerce(scaling, Scaling, "samd scaling") == "batch":
        shifted = a - a.min()
        return shifted / (shifted.max() + SCALE_EPS)
    flat = a.flatten(1)
    shifted = flat - flat.min(dim=1, keepdim=True).values
    return (shifted / (shifted.max(dim=1, keepdim=True).values + SCALE_EPS)).view_as(a)


def spatial_log_probs(m: torch.Tensor, tau: float) -> torch.Tensor:
    """``log(softmax_hw(M / tau) + 1e-10)`` for maps ``[B, H, W]``, as ``[B, H*W]``."""
    return (F.softmax(m.flatten(1) / tau, dim=1) + PROB_EPS).log()


def match_sizes(a_s: torch.Tensor, a_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive-average-pool maps ``[B, H, W]`` to the smaller size on each axis."""
    size = (min(a_s.shape[1], a_t.shape[1]), min(a_s.shape[2], a_t.shape[2]))

    def pool(a: torch.Tensor) -> torch.Tensor:
        if tuple(a.shape[1:]) == size:
            return a
        return F.adaptive_avg_pool2d(a.unsqueeze(1), size).squeeze(1)

    return pool(a_s), pool(a_t)


def student_sam(features: torch.Tensor) -> torch.Tensor:
    """``[T, B, C, H, W]`` (or ``[B, C, H, W]`` as ``T = 1``) -> ``[B, H, W]``: sum over T, C."""
    if features.dim() == 4:
        return features.sum(1)
    if features.dim() == 5:
        return features.sum(dim=(0, 2))
    raise ConfigError(
        f"samd student features must be [T, B, C, H, W], got shape {tuple(features.shape)}"
    )


def teacher_cam(
    features: torch.Tensor, logits: torch.Tensor, fc_weight: torch.Tensor
) -> torch.Tensor:
    """``ReLU(sum_c W[argmax z_t, c] F_t[b, c])``: ``[B, C, H, W]`` -> ``[B, H, W]``, detached."""
    if features.dim() != 4:
        raise ConfigError(
            f"samd teacher features must be [B, C, H, W], got shape {tuple(features.shape)}"
        )
    if fc_weight.shape[1] != features.shape[1]:
        raise ConfigError(
            f"samd: the teacher feature map has {features.shape[1]} channels but its classifier "
            f"(teacher_fc) takes {fc_weight.shape[1]} inputs; teacher_tap must name the module "
            "that feeds the global pooling"
        )
    rows = fc_weight.detach()[logits.detach().argmax(dim=1)].to(features.dtype)  # [B, C]
    return torch.einsum("bc,bchw->bhw", rows, features.detach()).relu()


def samd_loss(
    student_features: torch.Tensor,
    teacher_features: torch.Tensor,
    teacher_logits: torch.Tensor,
    fc_weight: torch.Tensor,
    tau: float = 2.0,
    scaling: Scaling = "batch",
) -> torch.Tensor:
    """The unweighted SAMD loss ``(1/B) sum_b KL(P_t[b] || P_s[b])``."""
    a_s = student_sam(student_features)
    a_t = teacher_cam(teacher_features, teacher_logits, fc_weight)
    if a_s.shape[0] != a_t.shape[0]:
        raise ConfigError(
            f"samd: student batch {a_s.shape[0]} does not match teacher batch {a_t.shape[0]}"
        )
    dtype = torch.promote_types(torch.promote_types(a_s.dtype, a_t.dtype), torch.float32)
    a_s, a_t = match_sizes(a_s.to(dtype), a_t.to(dtype))
    log_p_s = spatial_log_probs(saliency_scale(a_s, scaling), tau)
    log_p_t = spatial_log_probs(saliency_scale(a_t, scaling), tau)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum() / a_s.shape[0]


@register_method("samd")
class SAMD(DistillMethod):
    """Options:

    - ``tau``: the spatial softmax temperature (2 in the reference);
    - ``weight``: the term's weight;
    - ``scaling``: the saliency's min-max, over the whole batch (``batch``, the reference's)
      or over each sample (``sample``);
    - ``student_tap`` / ``teacher_tap``: the student's / the teacher's feature map (default:
      each model's ``feature_map_path``);
    - ``teacher_fc``: module path of the teacher's final ``nn.Linear`` (default: ``head.fc``
      of a zoo teacher; needs ``teacher_tap``).
    """

    name = "samd"

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        tau: Positive = 2.0,
        weight: Weight = 1.0,
        scaling: Scaling = "batch",
        student_tap: TapSpec | None = None,
        teacher_tap: TapSpec | None = None,
        teacher_fc: str | None = None,
    ) -> None:
        super().__init__()
        self.teacher_tap, self.teacher_fc = _teacher_cam_layers(teacher, teacher_tap, teacher_fc)
        self.tau, self.weight, self.scaling = float(tau), float(weight), scaling
        self.student_tap = resolve_tap(
            student, _student_map(student) if student_tap is None else student_tap
        )

    def student_taps(self) -> list[str]:
        return [self.student_tap]

    def teacher_taps(self) -> list[str]:
        return [self.teacher_tap]

    def forward(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        if batch.teacher is None:
            raise ConfigError("samd needs the teacher module in the batch (for teacher_fc)")
        loss = samd_loss(
            batch.student_features[self.student_tap],
            batch.teacher_features[self.teacher_tap],
            batch.teacher_logits,
            batch.teacher.get_submodule(self.teacher_fc).weight,
            self.tau,
            self.scaling,
        )
        return {"samd": self.weight * loss}

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, weight={self.weight}, scaling={self.scaling!r}, "
            f"student_tap={self.student_tap!r}, teacher_tap={self.teacher_tap!r}, "
            f"teacher_fc={self.teacher_fc!r}"
        )
