"""STM of a trained run (``spikedistill eval --stm``, the report): against its own teacher,
paired by its SASTC attention when it has one, or against a teacher given by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..checkpoint import load_weights
from ..data import make_loader
from ..distill.objective import DistillObjective, parse_methods
from ..distill.stm_probe import stm_probe
from ..distill.teacher import load_teacher
from ..errors import ConfigError
from ..metrics.stm import stm_variant
from .config import ExperimentConfig
from .objective import build_objective, config_teacher

if TYPE_CHECKING:
    from .trainer import Trainer


def trained_objective(
    ckpt: dict,
    cfg: ExperimentConfig,
    student: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    in_channels: int,
) -> nn.Module:
    """The run's distillation objective with its trained modules (SASTC MLPs, ...) restored
    from ``ckpt``; built on the batch ``x, y`` (SASTC needs ``data.batch_size`` samples)."""
    objective = build_objective(cfg, student, num_classes, in_channels).to(x.device)
    if hasattr(objective, "build"):
        objective.build(student, x, y)
    load_weights(objective, ckpt["objective"], "the run's objective")
    return objective


def stm_of_run(
    ckpt: dict,
    cfg: ExperimentConfig,
    student: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    in_channels: int,
    teacher_name: str | None = None,
    teacher_checkpoint: str | None = None,
    variant: str = "paper",
) -> float:
    """STM of a trained run: against its own teacher (and its SASTC attention, if any), or
    against ``teacher_name`` / ``teacher_checkpoint`` when given; ``variant``: its definition
    (``metrics.stm.STM_VARIANTS``)."""
    stm_variant(variant)  # an unknown name fails before any teacher is loaded
    if teacher_name:
        teacher = load_teacher(teacher_name, teacher_checkpoint, num_classes, in_channels).model
        return stm_probe(student, teacher.to(x.device), x, variant=variant)
    if not cfg.teacher.name:
        raise ConfigError("--stm needs a teacher: pass --teacher NAME --teacher-checkpoint PATH")
    if not parse_methods(cfg.distill.method):  # a run without distillation
        teacher = config_teacher(cfg.teacher, num_classes, in_channels)
        return stm_probe(student, teacher.model.to(x.device), x, variant=variant)
    objective = trained_objective(ckpt, cfg, student, x, y, num_classes, in_channels)
    sastc = dict(objective.methods).get("sastc")
    return stm_probe(student, objective.teacher.model, x, sastc=sastc, variant=variant)


def periodic_stm(trainer: Trainer, epoch: int) -> float | None:
    """STM (docs/methods.md §2.7; ``train.stm_variant``) of a trainer's student against its
    teacher (distilling, or a baseline run that names one) on the first test batch of
    ``data.batch_size`` samples (SASTC runs: paired by their attention), in the epochs
    ``train.stm_every`` asks for; else ``None``."""
    cfg, objective = trainer.cfg, trainer.objective
    if not cfg.train.stm_every or epoch % cfg.train.stm_every:
        return None
    if isinstance(objective, DistillObjective):
        teacher, sastc = objective.teacher.model, dict(objective.methods).get("sastc")
    elif cfg.teacher.name:
        teacher, sastc = baseline_teacher(trainer), None
    else:
        return None
    batch_size = trainer.train_loader.batch_size
    loader = make_loader(trainer.test_set, batch_size, train=False, info=trainer.info)
    x, _ = next(iter(loader))
    x = x.to(trainer.device)
    return stm_probe(trainer.model, teacher, x, sastc=sastc, variant=cfg.train.stm_variant)


def baseline_teacher(trainer: Trainer) -> nn.Module:
    """The teacher a run without distillation measures its STM against, loaded once."""
    if getattr(trainer, "stm_teacher", None) is None:
        info = trainer.info
        teacher = config_teacher(trainer.cfg.teacher, info.num_classes, info.in_channels)
        trainer.stm_teacher = teacher.model.to(trainer.device)
    return trainer.stm_teacher
