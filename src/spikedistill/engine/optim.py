"""Optimizers and per-step learning-rate schedules (warmup + step / multistep / cosine)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

import torch
from torch import nn

from .config import OptimConfig, SchedConfig


def parameter_groups(modules: Iterable[nn.Module], cfg: OptimConfig) -> list[dict]:
    """Trainable parameters; with ``no_decay_bn_bias`` biases and norm parameters get wd 0."""
    decay, no_decay, seen = [], [], set()
    for module in modules:
        for param in module.parameters():
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            (no_decay if cfg.no_decay_bn_bias and param.ndim <= 1 else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(modules: Iterable[nn.Module], cfg: OptimConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(modules, cfg)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def lr_factor(epoch: float, cfg: SchedConfig, total_epochs: int, base_lr: float) -> float:
    """Multiplier of the base learning rate at fractional ``epoch`` (0 <= epoch <= total)."""
    if cfg.warmup_epochs > 0 and epoch < cfg.warmup_epochs:
        return epoch / cfg.warmup_epochs
    if cfg.name == "step":
        return cfg.gamma ** int(epoch // cfg.step_size)
    if cfg.name == "multistep":
        return cfg.gamma ** bisect.bisect_right(sorted(cfg.milestones), epoch)
    if cfg.name == "cosine":
        span = max(total_epochs - cfg.warmup_epochs, 1e-8)
        progress = min(max(epoch - cfg.warmup_epochs, 0.0) / span, 1.0)
        floor = cfg.min_lr / base_lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: SchedConfig, epochs: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepped once per optimizer step."""
    base_lr = optimizer.param_groups[0]["lr"]
    steps = max(steps_per_epoch, 1)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step / steps, cfg, epochs, base_lr)
    )
