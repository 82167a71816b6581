"""A trained run read back: its training checkpoint checked field by field, and
``load_model``, the trained student ready to use (``eval``, ``report``, ``export``, Python)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import is_state_dict, load_checkpoint, load_weights, run_checkpoint
from ..data.info import DatasetInfo
from ..errors import CheckpointError, ConfigError, DataError, SpikeDistillError
from .config import ExperimentConfig, config_from_dict
from .run_paths import resolved_config
from .setup import build_student


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], ExperimentConfig]:
    """A training checkpoint (``last.pt`` / ``best.pt``, or a run directory's) and its config,
    field by field; the files the config names are resolved against the run directory
    (``run_paths``), so the run reads back from any working directory."""
    if Path(path).is_dir():
        path = run_checkpoint(path)
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path} is not a spikedistill training checkpoint (no config/model)")
    if not isinstance(ckpt["config"], dict):
        kind = type(ckpt["config"]).__name__
        raise CheckpointError(f"{path}: its config is a {kind}, not a mapping")
    for field in ("model", "objective"):
        if field in ckpt and not is_state_dict(ckpt[field]):
            raise CheckpointError(f"{path}: its {field!r} is not a state dict of tensors")
    try:
        data = resolved_config(ckpt["config"], Path(path).parent)
        cfg = config_from_dict(data, methods=False)  # eval, report, export: the student
    except ConfigError as err:
        raise ConfigError(f"{path}: its config is not valid: {err}") from None
    return ckpt, cfg


def require_objective(ckpt: dict[str, Any], path: str | os.PathLike) -> None:
    """The trained distillation modules (SASTC MLPs, ...) the STM probe restores."""
    if "objective" not in ckpt:
        raise CheckpointError(f"{path} holds no objective state (needed for the STM)")


def load_student(
    ckpt: dict[str, Any], cfg: ExperimentConfig, path: str | os.PathLike, info: DatasetInfo
) -> nn.Module:
    """The run's student for the data ``info`` describes, with the checkpoint's weights."""
    try:
        model = build_student(cfg, info.num_classes, info.in_channels, info.time_steps)
    except SpikeDistillError as err:  # e.g. a class of a script, a wrapped SpikingJelly net
        raise type(err)(
            f"{err}; if the student is your own module, load the run in Python with a new "
            "instance of it: spikedistill.load_model(run, model=...)"
        ) from None
    load_weights(model, ckpt["model"], str(path))
    return model


def stored_data_info(ckpt: dict[str, Any]) -> DatasetInfo | None:
    """The ``DatasetInfo`` a checkpoint was trained on (written since schema 1's
    ``data_info`` field; ``None`` for older checkpoints)."""
    fields = ckpt.get("data_info")
    if not isinstance(fields, dict):
        return None
    try:
        return DatasetInfo(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    except (TypeError, ConfigError) as err:
        raise CheckpointError(f"the checkpoint's data_info is damaged ({err})") from None


def _trained_root(ckpt: Any) -> str | None:
    """The data folder a run's checkpoint records that it trained on."""
    root = ckpt.get("data_root") if isinstance(ckpt, dict) else None
    return root if isinstance(root, str) else None


def run_data_root(ckpt: Any, cfg: ExperimentConfig, data_dir: str | None = None) -> str | None:
    """Where a run's dataset is looked for: ``data_dir`` (``--data-dir``), else the config's
    ``data.root`` where it is a folder from here, else the folder the run trained on (its
    checkpoints record it) while it exists, else ``data.root`` or ``None`` (then
    ``$SPIKEDISTILL_DATA``, then the cache)."""
    if data_dir:
        return data_dir
    if cfg.data.root and os.path.isdir(os.path.expanduser(cfg.data.root)):
        return cfg.data.root
    trained = _trained_root(ckpt)
    return trained if trained and os.path.isdir(trained) else cfg.data.root


def run_datasets(
    ckpt: Any, cfg: ExperimentConfig, data_dir: str | None, name: str | None = None
) -> tuple[Any, Any, DatasetInfo]:
    """``build_datasets`` of a run's data (``name``: another dataset, without the run's data
    options) from ``run_data_root``; not found, the error names the run's folder if gone."""
    from ..data import build_datasets

    name = name or cfg.data.name
    options = cfg.data.options if name == cfg.data.name else {}  # e.g. the frames of DVS data
    try:
        return build_datasets(name, run_data_root(ckpt, cfg, data_dir), **options)
    except DataError as err:
        trained = _trained_root(ckpt)
        if data_dir or trained is None or os.path.isdir(trained):
            raise
        raise DataError(
            f"{err} (the run trained on the data in {trained}, which is gone)"
        ) from None


def load_model(
    source: str | os.PathLike,
    *,
    model: nn.Module | None = None,
    device: str | torch.device = "cpu",
    data_dir: str | None = None,
) -> nn.Module:
    """The trained student of a run directory (its ``best.pt``, else ``last.pt``) or of a
    training checkpoint file, in eval mode on ``device``.

    The student is rebuilt from the run's config (its class count and input channels come
    from the checkpoint; one written before they were stored reads them off its dataset,
    found by ``run_data_root``), or is ``model`` when given: a fresh
    instance of the student you trained (needed for one the config cannot rebuild, such as a
    ``SpikingStudent``), which gets the weights. Its ``data_info`` attribute is that
    ``DatasetInfo`` (the normalisation its inputs need)."""
    path = run_checkpoint(source) if Path(source).is_dir() else Path(source)
    ckpt, cfg = read_checkpoint(path)
    info = stored_data_info(ckpt)
    if info is None:
        _, _, info = run_datasets(ckpt, cfg, data_dir)
    if model is None:
        model = load_student(ckpt, cfg, path, info)
    else:
        load_weights(model, ckpt["model"], str(path))
    model.data_info = info
    return model.to(device).eval()
