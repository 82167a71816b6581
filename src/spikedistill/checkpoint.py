"""Checkpoints: atomic writes, a schema version, ``weights_only=True`` loading, teacher layouts."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError, first_line
from .files import replaced_atomically

SCHEMA_VERSION = 1


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``:
    a reader never sees a half-written file, whenever the process dies."""
    with replaced_atomically(path) as tmp:
        torch.save(obj, tmp)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporaries that ``atomic_save`` calls killed mid-write left in ``folder``."""
    stale = sorted(Path(folder).glob(".*.pt.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


#: the checkpoints of a run directory, by preference (a run is measured at its best)
CHECKPOINTS = ("best.pt", "last.pt")


def run_checkpoint(run: str | os.PathLike) -> Path:
    """``best.pt`` (else ``last.pt``) of the run directory ``run``."""
    run = Path(run)
    if not run.is_dir():
        what = "is not a folder" if run.exists() else "does not exist"
        raise CheckpointError(f"run directory {str(run)!r} {what}")
    for name in CHECKPOINTS:
        if (run / name).is_file():
            return run / name
    raise CheckpointError(f"{run}: no best.pt or last.pt (is it a spikedistill run directory?)")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with one clear error for missing or corrupt files."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} is not a file (a folder or a device?)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, wrong format, disallowed globals ...
        raise CheckpointError(f"checkpoint {str(path)!r} {_why_unreadable(err)}") from None


def _why_unreadable(err: Exception) -> str:
    """``torch.load``'s error in a line, without its advice to load untrusted files with
    ``weights_only=False``."""
    detail = re.search(
        r"WeightsUnpickler error:\s*(.*?)\s*(?:Check the documentation|$)", str(err), re.S
    )
    if detail is None:
        return f"is unreadable or corrupt ({first_line(err)})"
    reason = " ".join(detail[1].split()).split(". ")[0]  # not torch's advice that follows
    if reason.startswith("Unsupported global"):
        return (
            f"holds objects other than tensors and plain containers ({reason}), which "
            "weights_only=True refuses to load"
        )
    return f"is unreadable or corrupt: not a PyTorch checkpoint? ({reason})"


def is_state_dict(value: Any) -> bool:
    """Whether ``value`` is a dict of tensors under string keys (the weights of a module)."""
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()
    )


#: keys under which trainers save the weights: RepDistiller / mdistiller / spikedistill
#: ``{"model": ...}``, Lightning / torchdistill ``{"state_dict": ...}``, ``{"net": ...}``
WRAPPER_KEYS = ("model", "state_dict", "net")


def unwrap_state_dict(obj: Any, depth: int = 3) -> dict[str, torch.Tensor]:
    """The weights in ``obj``: ``obj`` itself when it is a state dict, else the first of
    ``WRAPPER_KEYS`` (searched ``depth`` levels deep) that holds one."""
    if is_state_dict(obj):
        return obj
    if isinstance(obj, dict) and depth > 0:
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                with contextlib.suppress(CheckpointError):
                    return unwrap_state_dict(obj[key], depth - 1)
    raise CheckpointError(
        f"checkpoint holds no state dict (looked at the top and under {', '.join(WRAPPER_KEYS)})"
    )


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor] | None:
    """``state`` with ``prefix`` cut off every key, or None unless every key carries it."""
    if not state or not all(k.startswith(prefix) for k in state):
        return None
    return {k[len(prefix) :]: v for k, v in state.items()}


def mismatches(
    own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """``(missing, unexpected, shape mismatches)`` of weights ``state`` against a model's
    state dict ``own``; all empty when ``state`` fits."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    return missing, unexpected, shapes


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], what: str = "model") -> None:
    """Strict load with a message naming missing/unexpected keys and mismatching shapes."""
    if not is_state_dict(state):
        raise CheckpointError(f"{what} checkpoint: the weights are not a dict of tensors")
    missing, unexpected, shapes = mismatches(model.state_dict(), state)
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (e.g. {unexpected[:3]})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[0]})")
        raise CheckpointError(
            f"{what} checkpoint does not fit the architecture: {'; '.join(parts)}. "
            "Check the model name, num_classes and options."
        )
    model.load_state_dict(state)
