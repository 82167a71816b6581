"""The frozen ANN teacher: eval mode, ``requires_grad=False``, run under ``no_grad``."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from ..checkpoint import load_checkpoint_or_run
from ..errors import ConfigError
from ..models import build_model
from ..models.pretrained import load_pretrained


class FrozenTeacher(nn.Module):
    """Wraps a teacher so that ``train()`` never puts it in train mode.

    ``train_bn=True`` reproduces the CKDSNN reference, whose teacher BN ran in train mode
    (batch statistics, running stats updated; docs/methods.md §3.7) — off by default.
    """

    def __init__(self, model: nn.Module, train_bn: bool = False) -> None:
        super().__init__()
        self.model = model
        self.train_bn = train_bn
        for p in model.parameters():
            p.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> FrozenTeacher:
        super().train(mode)
        self.model.train(mode and self.train_bn)
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def load_teacher(
    name: str,
    checkpoint: str | None,
    num_classes: int,
    in_channels: int,
    options: dict[str, Any] | None = None,
    train_bn: bool = False,
    ema: bool = False,
) -> FrozenTeacher:
    """Build ANN ``name`` (a zoo name, ``torchvision:``/``timm:`` or ``package.module:callable``)
    and load its weights from ``checkpoint`` in any layout ``load_pretrained`` reads. A
    spikedistill run of ``name`` as ``checkpoint`` gives its ``model.options`` when ``options``
    are not given; ``ema``: the checkpoint's EMA weights, not its plain ones."""
    if not name:
        raise ConfigError(
            "distillation needs teacher.name (a zoo name, torchvision:NAME, timm:NAME or "
            "package.module:callable)"
        )
    loaded = None
    if checkpoint:
        loaded = load_checkpoint_or_run(checkpoint)
        trained = _trained_model(loaded)
        options = _run_options(trained, name, options)
        if trained.get("spiking"):
            warnings.warn(
                f"teacher.checkpoint {checkpoint!r} is a spiking run's: its weights load into "
                f"the ANN {name!r}, but were trained with spikes",
                UserWarning,
                stacklevel=2,
            )
    opts = {"in_channels": in_channels, **(options or {})}
    if opts.pop("num_classes", num_classes) != num_classes:
        raise ConfigError(
            f"teacher.options.num_classes={options['num_classes']}: a teacher with "  # type: ignore[index]
            f"{options['num_classes']} classes cannot teach a student of {num_classes} classes"  # type: ignore[index]
        )
    model = build_model(name, num_classes, spiking=False, **opts)
    if not checkpoint:
        warnings.warn(
            f"teacher.checkpoint is not set: distilling from an untrained {name!r}",
            UserWarning,
            stacklevel=2,
        )
    else:
        load_pretrained(model, loaded, arch=name, what=f"teacher {name!r}", ema=ema)
    return FrozenTeacher(model, train_bn=train_bn)


def teacher_options(
    name: str, checkpoint: str | None, options: dict[str, Any] | None
) -> dict[str, Any]:
    """The options ``load_teacher`` builds teacher ``name`` with: ``options``, else those a
    spikedistill run of ``name`` given as ``checkpoint`` records."""
    if not checkpoint:
        return dict(options or {})
    return _run_options(_trained_model(load_checkpoint_or_run(checkpoint)), name, options)


def _run_options(
    trained: dict[str, Any], name: str, options: dict[str, Any] | None
) -> dict[str, Any]:
    if trained.get("name") == name and not options:
        return dict(trained.get("options") or {})
    return dict(options or {})


def recorded_model(checkpoint: str) -> str | None:
    """The model name a spikedistill run (a folder or its checkpoint) records, else ``None``."""
    return _trained_model(load_checkpoint_or_run(checkpoint)).get("name") or None


def _trained_model(loaded: Any) -> dict[str, Any]:
    """The ``model`` section of a spikedistill checkpoint's config, else ``{}``."""
    config = loaded.get("config") if isinstance(loaded, dict) else None
    model = config.get("model") if isinstance(config, dict) else None
    return model if isinstance(model, dict) else {}
