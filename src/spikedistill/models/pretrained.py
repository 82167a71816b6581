"""``load_pretrained``: weights trained elsewhere into a model, strictly.

A checkpoint is read in steps, each explicit:

1. unwrap: the state dict itself or under ``model`` / ``state_dict`` / ``net``
   (``checkpoint.find_weights``: RepDistiller, mdistiller, Lightning, timm, spikedistill), else
   the EMA weights under ``state_dict_ema`` / ``model_ema`` / ``ema``; where both are saved,
   the plain ones (as timm does; a warning says so), or the EMA ones with ``ema=True``;
2. *views* of its keys, in order: as saved; then, while every key carries one, a prefix cut
   off (``STRIP``: DDP's ``module.``, Lightning's ``model.``); then a sub-model kept
   (``SUBMODELS``: mdistiller's Distiller saves ``student.*`` beside ``teacher.*`` and its
   loss modules, which are left out, with a warning naming them);
3. per view, the readings of ``key_layouts.mappings``: the zoo's own keys, then the detected
   layout renamed onto ``arch``'s family;
4. the first reading whose keys and shapes fit the model is loaded (``load_weights``, strict).
   None fits: the closest one's missing / unexpected keys, and every reading tried.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter

import torch
from torch import nn

from ..checkpoint import (
    find_weights,
    load_checkpoint_or_run,
    load_weights,
    mismatches,
    strip_prefix,
)
from ..errors import CheckpointError
from .key_layouts import mappings

State = dict[str, torch.Tensor]

#: prefixes cut off when every key carries one
STRIP = {"module.": "DDP / DataParallel", "model.": "Lightning"}
#: sub-models kept when some keys, not all, carry the prefix
SUBMODELS = {"student.": "mdistiller's Distiller"}


def views(state: State) -> list[tuple[str, State, dict[str, int]]]:
    """``[(label, keys, left out)]``: ``state`` as saved, then with each prefix step of the
    module docstring applied in turn; ``left out`` counts the dropped keys per first name."""
    out = [("as saved", state, {})]
    label, dropped = "", {}
    for _ in range(4):
        step = _strip(state) or _submodel(state)
        if step is None:
            break
        text, state, left = step
        label, dropped = f"{label}, {text}" if label else text, {**dropped, **left}
        out.append((label, state, dropped))
    return out


def _strip(state: State) -> tuple[str, State, dict[str, int]] | None:
    for prefix, who in STRIP.items():
        stripped = strip_prefix(state, prefix)
        if stripped is not None:
            return f"{prefix!r} cut ({who})", stripped, {}
    return None


def _submodel(state: State) -> tuple[str, State, dict[str, int]] | None:
    for prefix, who in SUBMODELS.items():
        kept = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if kept and len(kept) < len(state):
            left = Counter(k.split(".")[0] + ".*" for k in state if not k.startswith(prefix))
            return f"{prefix!r} kept ({who})", kept, dict(left)
    return None


def _source_state(source: str | os.PathLike | dict, ema: bool, what: str) -> State:
    if not isinstance(source, dict):  # a file, or a spikedistill run: its best.pt, else last.pt
        source = load_checkpoint_or_run(source)
    state, note = find_weights(source, ema)
    if note:
        warnings.warn(f"{what}: loaded the plain weights; {note}", stacklevel=3)
    return state


def load_pretrained(
    model: nn.Module,
    source: str | os.PathLike | dict,
    arch: str | None = None,
    what: str = "model",
    ema: bool = False,
) -> None:
    """Load the weights of checkpoint ``source`` (a path, read with ``weights_only=True``, a
    spikedistill run directory, or the loaded object) into ``model``, zoo model ``arch``
    (None: no key renaming), strictly; ``ema``: its EMA weights, not the plain ones.

    Raises ``CheckpointError`` naming the missing / unexpected keys or mismatching shapes of
    the closest reading, and the readings tried, when none fits."""
    own = model.state_dict()
    tried: list[str] = []
    best: tuple[int, State] | None = None
    notes: list[str] = []
    for label, state, dropped in views(_source_state(source, ema, what)):
        readings, note = mappings(state, arch, own)
        notes += [note] if note and note not in notes else []
        for layout, renamed in readings:
            renamed = _with_bn_counters(renamed, own)
            missing, unexpected, shapes = mismatches(own, renamed)
            score = len(missing) + len(unexpected) + len(shapes)
            if score == 0:
                _warn_dropped(dropped, label, what)
                load_weights(model, renamed, what)
                return
            tried.append(f"{label}: {layout}")
            if best is None or score < best[0]:
                best = (score, renamed)
    assert best is not None
    try:
        load_weights(model, best[1], what)
    except CheckpointError as err:
        raise CheckpointError(
            f"{err} Tried: {'; '.join(tried)}." + "".join(f" Note: {n}." for n in notes)
        ) from None


def _with_bn_counters(state: State, own: State) -> State:
    """BatchNorm's ``num_batches_tracked`` set to 0 where they are all the model misses
    (checkpoints of PyTorch < 0.4.1 lack them; they only count batches)."""
    missing = set(own) - set(state)
    if not missing or not all(k.endswith(".num_batches_tracked") for k in missing):
        return state
    return {**state, **{k: torch.zeros_like(own[k]) for k in missing}}


def _warn_dropped(dropped: dict[str, int], label: str, what: str) -> None:
    if dropped:
        left = ", ".join(f"{name} ({n} keys)" for name, n in dropped.items())
        warnings.warn(f"{what}: loaded the checkpoint read {label}; left out {left}", stacklevel=3)
