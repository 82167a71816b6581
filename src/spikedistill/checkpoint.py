"""Checkpoints: atomic writes, a schema version, ``weights_only=True`` loading, teacher layouts."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
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
    """``torch.load(weights_only=True)`` with one clear error for missing or corrupt files;
    the harmless ``safe_globals()`` (trainers' arguments, numpy scalars) are allowed."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} is not a file (a folder or a device?)")
    try:
        with _allowing(safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, wrong format, disallowed globals ...
        raise CheckpointError(f"checkpoint {str(path)!r} {_why_unreadable(err)}") from None


def load_checkpoint_or_run(source: str | os.PathLike) -> Any:
    """``load_checkpoint`` of a file, or of a run directory's ``run_checkpoint``."""
    return load_checkpoint(run_checkpoint(source) if os.path.isdir(source) else source)


def safe_globals() -> list[Any]:
    """The types beside tensors and plain containers that ``load_checkpoint`` allows:
    ``argparse.Namespace`` (timm's ``train.py`` and DeiT save their ``args``) and numpy scalars
    (``best_acc1``, ``epoch``) with their dtypes, under numpy 1's and numpy 2's names."""
    scalar = np.float64(0).__reduce__()[0]  # numpy.core / numpy._core .multiarray.scalar
    dtypes = [type(np.dtype(code)) for code in "?bhilqBHILQefd"]  # bool, ints, floats
    allowed: list[Any] = [argparse.Namespace, scalar, np.dtype, *dict.fromkeys(dtypes)]
    if hasattr(torch.serialization, "safe_globals") and torch.__version__ >= "2.6":
        # (object, name) pairs: a file pickled under the other numpy's module name
        allowed += [(scalar, f"numpy.{m}.multiarray.scalar") for m in ("core", "_core")]
    return allowed


def _allowing(allowed: list[Any]) -> contextlib.AbstractContextManager:
    """``torch.serialization.safe_globals(allowed)`` (this load only, no process-wide state);
    nothing on torch 2.4, which lacks it."""
    if not hasattr(torch.serialization, "safe_globals"):
        return contextlib.nullcontext()
    return torch.serialization.safe_globals(allowed)


#: what to do with a checkpoint that holds other objects
RESAVE = (
    "if you trust the file, re-save just its weights in the environment that wrote it "
    "(torch.save(ckpt['model'], 'weights.pt') after loading it there in full), or pass the "
    "state dict itself to load_pretrained in Python"
)


def _why_unreadable(err: Exception) -> str:
    """``torch.load``'s error in a line, without its advice to load untrusted files with
    ``weights_only=False``, and what to do instead."""
    detail = re.search(
        r"WeightsUnpickler error:\s*(.*?)\s*(?:Check the documentation|$)", str(err), re.S
    )
    if detail is None:
        return f"is unreadable or corrupt ({first_line(err)})"
    reason = " ".join(detail[1].split()).split(". ")[0]  # not torch's advice that follows
    if reason.startswith(("Unsupported global", "Can only build")):
        reason = reason.replace(" was not an allowed global by default", "")
        return (
            f"holds objects other than tensors and plain containers ({reason}), which "
            f"weights_only=True refuses to load: {RESAVE}"
        )
    return f"is unreadable or corrupt: not a PyTorch checkpoint? ({reason})"


def is_state_dict(value: Any) -> bool:
    """Whether ``value`` is a dict of tensors under string keys (the weights of a module)."""
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()
    )


#: keys under which trainers save the weights: RepDistiller / mdistiller / spikedistill
#: ``{"model": ...}``, Lightning / torchdistill / timm ``{"state_dict": ...}``, ``{"net": ...}``
WRAPPER_KEYS = ("model", "state_dict", "net")
#: keys of the EMA weights: timm's ``train.py`` ``state_dict_ema``, DeiT ``model_ema``, ``ema``
EMA_KEYS = ("state_dict_ema", "model_ema", "ema")


def find_weights(obj: Any, ema: bool = False) -> tuple[dict[str, torch.Tensor], str]:
    """``(weights, note)``: ``obj`` itself when it is a state dict, else the first of
    ``WRAPPER_KEYS`` (searched 3 levels deep) that holds one, else the first of ``EMA_KEYS``;
    ``ema``: the EMA weights first. ``note`` names the EMA weights left aside, else is empty."""
    plain = _search(obj, WRAPPER_KEYS, 3)
    averaged, key = next(
        ((w, k) for k in EMA_KEYS if (w := _under(obj, k)) is not None), (None, None)
    )
    if ema and averaged is None:
        raise CheckpointError(
            f"checkpoint holds no EMA weights (looked under {', '.join(EMA_KEYS)}; "
            f"found {_top_level(obj)})"
        )
    if plain is not None and not ema:
        note = f"left aside the EMA weights under {key!r} (teacher.ema: true takes them)"
        return plain, note if key else ""
    if averaged is not None:
        return averaged, ""
    raise CheckpointError(
        f"checkpoint holds no state dict (looked at the top and under "
        f"{', '.join(WRAPPER_KEYS + EMA_KEYS)}; found {_top_level(obj)})"
    )


def _search(obj: Any, keys: tuple[str, ...], depth: int) -> dict[str, torch.Tensor] | None:
    """``obj`` when it is a state dict, else the first found under ``keys``, ``depth`` deep."""
    if is_state_dict(obj):
        return obj
    if isinstance(obj, dict) and depth > 0:
        for key in keys:
            found = _search(obj.get(key), WRAPPER_KEYS, depth - 1)
            if found is not None:
                return found
    return None


def _under(obj: Any, key: str) -> dict[str, torch.Tensor] | None:
    """The state dict under top-level ``key`` of ``obj`` (or one of its wrapper keys)."""
    return _search(obj[key], WRAPPER_KEYS, 2) if isinstance(obj, dict) and key in obj else None


def _top_level(obj: Any, most: int = 12) -> str:
    """What a checkpoint holds at its top, for an error message."""
    if not isinstance(obj, dict):
        return f"a {type(obj).__name__}"
    if not obj:
        return "an empty dict"
    keys = [repr(k) for k in list(obj)[:most]] + (["..."] if len(obj) > most else [])
    return f"top-level keys {', '.join(keys)}"


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
        found = (hint(model, state) for hint in (classifier_hint, input_hint))
        hints = "".join(f"{h}. " for h in found if h)
        raise CheckpointError(
            f"{what} checkpoint does not fit the architecture: {'; '.join(parts)}. {hints}"
            "Check the model name, num_classes and options."
        )
    model.load_state_dict(state)


def classifier_hint(model: nn.Module, state: dict[str, torch.Tensor]) -> str:
    """A sentence when the model's last ``nn.Linear`` (its classifier) has another number of
    outputs in ``state`` (a head trained for other classes), else ''."""
    found = _differing_dim(model, state, nn.Linear, -1, dim=0)
    if not found:
        return ""
    key, theirs, own = found
    return (
        f"The classifier {key!r} has {theirs} outputs in the checkpoint and {own} in the model: "
        f"the checkpoint was trained for {theirs} classes (another dataset?), the model is built "
        f"with num_classes={own}"
    )


def input_hint(model: nn.Module, state: dict[str, torch.Tensor]) -> str:
    """A sentence when the model's first convolution takes another number of input channels
    in ``state`` (weights trained on RGB images, data in grayscale, ...), else ''."""
    found = _differing_dim(model, state, nn.modules.conv._ConvNd, 0, dim=1)
    if not found:
        return ""
    key, theirs, own = found
    return (
        f"The first layer {key!r} takes {theirs} input channels in the checkpoint and {own} in "
        f"the model: the checkpoint was trained on {theirs}-channel inputs, the data here has "
        f"{own}"
    )


def _differing_dim(
    model: nn.Module, state: dict[str, torch.Tensor], kind: type, which: int, dim: int
) -> tuple[str, int, int] | None:
    """``(key, in state, in model)`` when the weight of the ``which``-th module of ``kind``
    differs from ``state``'s in size ``dim`` alone, else None."""
    names = [name for name, m in model.named_modules() if isinstance(m, kind)]
    if not names:
        return None
    key = f"{names[which]}.weight".lstrip(".")
    own, theirs = model.state_dict().get(key), state.get(key)
    if own is None or theirs is None or own.dim() != theirs.dim() or own.dim() < 2:
        return None
    others = [d for d in range(own.dim()) if d != dim]
    if own.shape[dim] == theirs.shape[dim] or any(own.shape[d] != theirs.shape[d] for d in others):
        return None
    return key, theirs.shape[dim], own.shape[dim]
