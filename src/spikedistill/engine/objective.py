"""Training objectives: a batch -> the student's logits and its named loss terms, and
``build_objective``, the one a config asks for (CE, or distillation).

An objective is an ``nn.Module`` so that trainable extras (regressors, attention MLPs of a
distillation method) are optimised with the student and saved in checkpoints.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import torch
from torch import nn

from ..distill.base import method_class
from ..distill.objective import DistillObjective, build_method, parse_methods
from ..distill.teacher import FrozenTeacher, load_teacher
from ..errors import ConfigError
from .config import ExperimentConfig, TeacherConfig
from .options import check_distill_section


class TrainStep(nn.Module):
    """``(x, y, index) -> (logits, loss terms)``: the objective applied to the training view
    of the student. One module over every trained parameter, for DDP to wrap."""

    def __init__(self, model: nn.Module, objective: nn.Module, train_forward: Any) -> None:
        super().__init__()
        self.model, self.objective = model, objective
        # the model, its compiled form or its RateBackprop view (not registered again)
        self.__dict__["train_forward"] = train_forward

    def forward(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor | None = None):
        return self.objective(self.train_forward, x, y, index)


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


def config_teacher(t: TeacherConfig, num_classes: int, in_channels: int) -> FrozenTeacher:
    """The teacher a config's ``teacher`` section names, loaded and frozen."""
    return load_teacher(
        t.name, t.checkpoint, num_classes, in_channels, t.options, t.train_bn, t.ema
    )


def build_objective(
    cfg: ExperimentConfig,
    student: nn.Module,
    num_classes: int,
    in_channels: int,
    world_size: int = 1,
    num_train: int | None = None,
    teacher: nn.Module | None = None,
) -> nn.Module:
    """CE, or a ``DistillObjective``; ``num_train`` sizes the teacher cache. The teacher is
    ``teacher`` when given (a trained module, frozen here), else ``cfg.teacher``'s."""
    check_distill_section(cfg)  # also when cfg was built in Python, not loaded
    names = parse_methods(cfg.distill.method)
    if not names:
        if (cfg.teacher.name or teacher is not None) and not cfg.train.stm_every:
            warnings.warn(
                "a teacher is set but distill.method is none: training with CE only, the "
                "teacher is not used (set distill.method, e.g. kd, to distil, or "
                "train.stm_every to measure the STM against it)",
                UserWarning,
                stacklevel=2,
            )
        return CrossEntropyObjective()
    t = cfg.teacher
    if t.cache and (cfg.data.augment or t.train_bn):
        raise ConfigError(
            "teacher.cache needs the same teacher input every epoch: remove data.augment "
            "(and teacher.train_bn), or set teacher.cache: false"
        )
    if teacher is not None:
        teacher = FrozenTeacher(teacher, train_bn=t.train_bn)
    else:
        teacher = config_teacher(t, num_classes, in_channels)
    methods = []
    for name in names:
        cls = method_class(name)
        options = dict(cfg.distill.options.get(cls.name, {}))
        params = inspect.signature(cls.__init__).parameters
        if "batch_size" in params:  # check_distill_section refused a user's value
            options["batch_size"] = cfg.data.batch_size // world_size
        methods.append(build_method(name, student, teacher.model, options))
    cache_size = num_train if t.cache else None
    return DistillObjective(
        student, teacher, methods, ce_weight=cfg.distill.ce_weight, cache_size=cache_size
    )
