r"""BRD: ANN-guided distillation by hybrid block-wise replacement (docs/methods.md §5.3, our design;
the paper's code is not public).

Student and teacher share the macro-architecture (the same stages, channels and strides).
For every branch ``k = 1 .. K`` (a block boundary, in network order) a hybrid feeds the
student's block-``k`` rate ``r_k = mean_t s_k`` through a learnable mapping ``Phi_k`` into
the frozen teacher's remaining blocks ``A_{>k}`` and head:

    z_k = head_A(A_{>k}(Phi_k(r_k)))
    L_brd = sum_k w_k [ CE(z_k, y) + kd_weight * tau^2 KL(softmax(z_A/tau) || softmax(z_k/tau)) ]

with ``w_k = 2^-(K+1-k)`` (``weights="exp"``) or 1 (``"uniform"``). ``branches`` (module paths,
``brd_branches``) defaults to every stage boundary (``K = N-1`` for ``N`` stages); a path inside
a stage (``"layer2.0"``: a residual block; in a VGG-like stage, the activation ending a conv
block) makes ``A_{>k}`` the rest of that stage, then the later stages. The pure student
(``k = K+1``) is trained by the objective's CE (and ``kd`` in ``brd+kd``). The teacher tail
runs in eval mode with frozen weights but passes gradient, so shallow student blocks get short
supervision from the ANN; under Rate-BP (``train.backprop: rate``) ``r_k`` is the rate-graph
tensor. Inference uses the pure SNN only. Mappings: ``identity``, ``affine`` (per-channel scale
and shift, identity-initialised) or ``conv1x1_bn`` (1x1 conv initialised to identity, then BN).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..models import ZooModel
from ..typed import Count, MinItems, Positive, Weight
from .base import DistillBatch, DistillMethod, register_method
from .brd_branches import resolve_branches, teacher_rest
from .kd import kd_loss

MappingKind = Literal["identity", "affine", "conv1x1_bn"]
BranchWeights = Literal["exp", "uniform"]  # w_k = 2^-(K+1-k), or 1
Branches = Annotated[list[str], MinItems(1)]


class Affine(nn.Module):
    """Per-channel ``scale * x + shift`` on ``[B, C, ...]``, starting as the identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, *([1] * (x.dim() - 2)))
        return x * self.scale.view(shape) + self.shift.view(shape)


def make_mapping(kind: MappingKind, channels: int) -> nn.Module:
    if kind == "identity":
        return nn.Identity()
    if kind == "affine":
        return Affine(channels)
    conv = nn.Conv2d(channels, channels, 1, bias=False)
    nn.init.dirac_(conv.weight)
    return nn.Sequential(conv, nn.BatchNorm2d(channels))


def hybrid_loss(
    z: torch.Tensor,
    teacher_logits: torch.Tensor,
    y: torch.Tensor,
    kd_weight: float,
    tau: float,
    ce: bool = True,
) -> torch.Tensor:
    """``[CE(z, y) +] kd_weight * tau^2 KL(softmax(z_A/tau) || softmax(z/tau))``, unweighted."""
    loss = kd_weight * kd_loss(z, teacher_logits, tau)
    if ce:
        loss = loss + F.cross_entropy(z, y)
    return loss


def _check_zoo_pair(student: nn.Module, teacher: nn.Module) -> None:
    """BRD runs the teacher's later stages and head on the student's stage outputs, so both
    must be zoo models (``ZooModel``) with the same stages, channels and strides."""
    for role, model in (("student", student), ("teacher", teacher)):
        if not isinstance(model, ZooModel):
            raise ConfigError(
                f"brd needs a zoo {role} ({type(model).__name__} is not a zoo model): it feeds "
                "the student's stage outputs into the teacher's later stages, so student and "
                "teacher must be zoo models with the same stages (matching channels and "
                "strides), e.g. resnet19 SNN and resnet19 ANN; for your own student use kd, "
                "fitnet, sastc, samd or nld"
            )


@register_method("brd")
class BRD(DistillMethod):
    """Options:

    - ``mapping``: ``Phi_k``, from the student's rate into the teacher's tail: ``identity``,
      ``affine`` or ``conv1x1_bn``;
    - ``weights``: the branch weights ``w_k``, ``exp`` (``2^-(K+1-k)``) or ``uniform`` (1);
    - ``kd_weight``: the weight of each branch's KD term;
    - ``tau``: the KD temperature;
    - ``ce``: whether each branch has a CE term;
    - ``weight``: the weight of every ``brd{k}`` term;
    - ``curriculum_epochs``: > 0 drops the hybrids from the shallowest on, evenly over that
      many epochs (none left after it);
    - ``init_from_teacher``: copy the teacher's weights into the student (same architecture
      and options needed);
    - ``branches``: the block boundaries to branch at (module paths, sorted into network
      order; default: every stage boundary), term ``brd{k}`` for the ``k``-th.
    """

    name = "brd"

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        mapping: MappingKind = "affine",
        weights: BranchWeights = "exp",
        kd_weight: Weight = 1.0,
        tau: Positive = 4.0,
        ce: bool = True,
        weight: Weight = 1.0,
        curriculum_epochs: Count = 0,
        init_from_teacher: bool = False,
        branches: Branches | None = None,
    ) -> None:
        super().__init__()
        _check_zoo_pair(student, teacher)
        stages = list(student.stage_names)
        if stages != list(teacher.stage_names) or len(stages) < 2:
            raise ConfigError(
                "brd needs a student and a teacher with the same stages (>= 2); got "
                f"{stages} and {getattr(teacher, 'stage_names', None)}"
            )
        if init_from_teacher:
            own, theirs = student.state_dict(), teacher.state_dict()
            if {k: v.shape for k, v in own.items()} != {k: v.shape for k, v in theirs.items()}:
                raise ConfigError(
                    "brd init_from_teacher needs the same architecture and options for the "
                    "student and the teacher (their weights differ in names or shapes)"
                )
            student.load_state_dict(theirs)
        self.stages = stages
        self.branches = resolve_branches(student, teacher, branches)
        self.mapping_kind, self.weights_kind = mapping, weights
        self.kd_weight, self.tau, self.ce, self.weight = kd_weight, tau, ce, weight
        self.curriculum_epochs = curriculum_epochs
        self.first_hybrid = 1  # shallowest block boundary still trained (curriculum)
        self.mappings = nn.ModuleList()

    def student_taps(self) -> list[str]:
        return [b.path for b in self.branches]

    def teacher_taps(self) -> list[str]:  # only to check the shapes at the boundaries
        return [b.path for b in self.branches]

    def build(self, batch: DistillBatch) -> None:
        for name in self.student_taps():
            s, t = batch.student_features[name], batch.teacher_features[name]
            if s.shape[2:] != t.shape[1:]:
                raise ConfigError(
                    f"brd: student and teacher differ after {name!r}: "
                    f"{tuple(s.shape[2:])} vs {tuple(t.shape[1:])} (channels, height, width)"
                )
            self.mappings.append(make_mapping(self.mapping_kind, s.shape[2]).to(s.device))

    def set_epoch(self, epoch: int) -> None:
        if self.curriculum_epochs:
            n = len(self.branches)
            self.first_hybrid = 1 + (n * epoch) // self.curriculum_epochs

    def hybrid_weight(self, k: int) -> float:
        return 2.0 ** -(len(self.branches) + 1 - k) if self.weights_kind == "exp" else 1.0

    def hybrid_logits(self, batch: DistillBatch) -> dict[int, torch.Tensor]:
        """``{k: z_k}`` for the active branches ``k``."""
        teacher = batch.teacher
        out = {}
        for k in range(self.first_hybrid, len(self.branches) + 1):
            branch = self.branches[k - 1]
            h = self.mappings[k - 1](batch.student_features[branch.path].mean(0))
            for module in teacher_rest(teacher, branch):
                h = module(h)
            out[k] = teacher.head(h)
        return out

    def forward(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        terms = {}
        for k, z in self.hybrid_logits(batch).items():
            loss = hybrid_loss(z, batch.teacher_logits, batch.y, self.kd_weight, self.tau, self.ce)
            terms[f"brd{k}"] = self.weight * self.hybrid_weight(k) * loss
        return terms
