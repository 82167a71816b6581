"""Finite-value guards: a NaN or inf in the data or the weights stops the run, named,
before it is trained on or saved (a threshold turns NaN into "no spike", so the loss can
stay finite while the weights are already lost)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import DataError, NonFiniteError


def check_finite_batch(x: torch.Tensor, index: torch.Tensor, split: str, dataset: str) -> None:
    """``DataError`` naming the first sample of the batch with a non-finite value (``index``:
    the samples' dataset indices; ``split``: "training" or "test"). Event frames come
    time-first, ``[T, B, ...]``."""
    if not x.is_floating_point():
        return
    samples = x.transpose(0, 1) if x.dim() == 5 else x
    finite = torch.isfinite(samples.reshape(samples.shape[0], -1)).all(1)
    if bool(finite.all()):
        return
    bad = int(index[int((~finite).nonzero()[0])])
    raise DataError(
        f"non-finite value (NaN or inf) in {split} sample {bad} of {dataset}; fix or drop that "
        "sample (the check runs on the first pass over the data: data.check_finite)"
    )


def first_nonfinite_tensor(module: nn.Module) -> str | None:
    """The name of the first parameter or floating buffer holding a NaN or inf (one host
    synchronisation when all are finite)."""
    named = [
        (name, t)
        for name, t in (*module.named_parameters(), *module.named_buffers())
        if t.is_floating_point()
    ]
    if not named:
        return None
    flags = torch.stack([torch.isfinite(t).all() for _, t in named])
    if bool(flags.all()):
        return None
    return named[int((~flags).nonzero()[0])][0]


def check_finite_model(module: nn.Module, where: str) -> None:
    """``NonFiniteError`` naming the first non-finite tensor of ``module``."""
    name = first_nonfinite_tensor(module)
    if name is not None:
        raise NonFiniteError(
            f"non-finite values in {name} {where}; nothing of it was saved. Lower optim.lr or "
            "set train.grad_clip"
        )
