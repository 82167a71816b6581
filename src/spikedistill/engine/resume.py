"""A run's ``last.pt`` / ``best.pt``: what it holds (``run_checkpoint``), and reading it back
(``restore``): every field checked before anything is restored, so a damaged or foreign
checkpoint is one ``CheckpointError`` and the run's state stays as it was."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

import torch

from ..checkpoint import SCHEMA_VERSION, load_checkpoint, load_weights
from ..errors import CheckpointError, ConfigError, first_line
from .config import config_from_dict
from .options import with_method_defaults
from .run_paths import absolute_config, resolved_config, stored_config
from .schema import shorten
from .train_state import TrainState, config_diff, rng_state, set_rng_state

if TYPE_CHECKING:
    from .trainer import Trainer

#: the fields of a run checkpoint and their types
RUN_FIELDS: dict[str, type] = {
    "config": dict,
    "model": dict,
    "objective": dict,
    "optimizer": dict,
    "scheduler": dict,
    "state": dict,
    "rng": dict,
}
STATE_FIELDS = {"epoch": int, "step_in_epoch": int, "global_step": int, "running": dict,
                "history": list, "best_top1": float}  # fmt: skip


def run_checkpoint(trainer: Trainer) -> dict[str, Any]:
    """What a run checkpoint holds. Its running sums of a partial epoch are all ranks' (a
    collective: every rank calls this), which rank 0 carries on resume (``restore``)."""
    s = trainer.state
    return {
        "schema_version": SCHEMA_VERSION,
        "model_name": trainer.cfg.model.name,
        "data_info": dataclasses.asdict(trainer.info),  # load_model builds without the data
        "config": stored_config(trainer.cfg, trainer.run_dir),  # paths: run_paths
        "model": trainer.model.state_dict(),
        "objective": trainer.objective.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
        "world_size": trainer.dist.world_size,
        "data_root": trainer.data_root,  # where it trained: engine.load.run_data_root
        "state": {**s.to_dict(), "running": s.summed_running(trainer.dist, trainer.device)},
        "rng": rng_state(),
    }


def read_run_checkpoint(path: str | os.PathLike, device: torch.device) -> dict[str, Any]:
    """``last.pt`` of a run, its fields and their types checked."""
    ckpt = load_checkpoint(path, map_location=device)
    version = ckpt.get("schema_version") if isinstance(ckpt, dict) else None
    if version != SCHEMA_VERSION:
        raise CheckpointError(
            f"{path} is not a spikedistill run checkpoint of schema {SCHEMA_VERSION} "
            f"(schema_version: {version!r})"
        )
    for fields, where in ((RUN_FIELDS, ckpt), (STATE_FIELDS, ckpt.get("state", {}))):
        for key, kind in fields.items():
            value = where.get(key) if isinstance(where, dict) else None
            if not isinstance(value, kind) or isinstance(value, bool):
                got = "missing" if value is None else type(value).__name__
                raise CheckpointError(f"{path}: field {key!r} should be {kind.__name__}, {got}")
    state = ckpt["state"]
    negative = [k for k in ("epoch", "step_in_epoch", "global_step") if state[k] < 0]
    if negative or not all(isinstance(row, dict) for row in state["history"]):
        what = f"negative {negative[0]}" if negative else "a history entry that is not a mapping"
        raise CheckpointError(f"{path}: its loop state holds {what} (a damaged checkpoint?)")
    return ckpt


def with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config with the keys added since it was written at their defaults (so that a
    new option is no change), or as saved if it no longer loads."""
    try:
        return config_from_dict(saved).to_dict()
    except ConfigError:
        return saved


def _at(config: dict[str, Any], dotted: str, most: int = 40) -> str:
    """The value of a dotted key of a nested config dict, short (``-`` where it has none)."""
    node: Any = config
    for part in dotted.split("."):
        node = node.get(part, "-") if isinstance(node, dict) else "-"
    return shorten(repr(node), most)


def restore(trainer: Trainer, ckpt: dict[str, Any], force: bool) -> None:
    """Load ``ckpt`` into ``trainer``; a checkpoint written under another config is refused
    (naming the keys) unless ``force``, and then must still fit the model."""
    saved = resolved_config(with_defaults(ckpt["config"]), trainer.run_dir)
    given = absolute_config(trainer.cfg.to_dict())  # paths resolved
    saved, given = with_method_defaults(saved), with_method_defaults(given)
    changed = [f"{k} ({_at(saved, k)} -> {_at(given, k)})" for k in config_diff(saved, given)]
    saved_world = ckpt.get("world_size", 1)
    if saved_world != trainer.dist.world_size:  # another sharding: another data order
        changed.append(f"world size ({saved_world} -> {trainer.dist.world_size} processes)")
    if changed and not force:
        raise ConfigError(
            f"the config differs from the run's in {', '.join(changed)}; "
            "resume with the same config, or pass --force"
        )
    steps = len(trainer.train_loader)
    if ckpt["state"]["step_in_epoch"] > steps:
        raise CheckpointError(
            f"the run checkpoint is at step {ckpt['state']['step_in_epoch']} of an epoch, which "
            f"has {steps} steps here (another data.batch_size or dataset?)"
        )
    load_weights(trainer.model, ckpt["model"], "run")
    load_weights(trainer.objective, ckpt["objective"], "the run's objective (its methods')")
    try:
        trainer.optimizer.load_state_dict(ckpt["optimizer"])
        trainer.scheduler.load_state_dict(ckpt["scheduler"])
        if trainer.scaler is not None and ckpt.get("scaler"):
            trainer.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(
            f"the run checkpoint does not fit this run: {first_line(err)}"
        ) from None
    trainer.state = TrainState.from_dict(ckpt["state"])
    if not trainer.dist.is_main:  # the running sums are all ranks': rank 0 carries them
        run = trainer.state.running
        trainer.state.running = {k: v if k == "seconds" else 0.0 for k, v in run.items()}
