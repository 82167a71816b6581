"""Evaluation over a whole test loader: top-1 accuracy and mean cross-entropy."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from ..errors import DataError
from .finite import check_finite_batch


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    reduce: Callable[[list[float], torch.device], list[float]] | None = None,
    check_finite: str | None = None,
) -> dict[str, float]:
    """``{"top1": %, "loss": mean CE, "samples": n}`` over every batch of ``loader``; with
    ``reduce`` (a sum over processes, ``DistContext.sum``) over every process's shard.
    ``check_finite`` (the dataset's name): refuse non-finite inputs, naming the test sample.
    A test sample that cannot be read (``DataError``) on one process ends the evaluation on
    every process, after that sum, so that they stop (and save) together."""
    was_training = model.training
    model.eval()
    failed: DataError | None = None
    try:
        correct, total, loss_sum = _sums(model, loader, device, autocast_dtype, check_finite)
    except DataError as err:
        failed, (correct, total, loss_sum) = err, (0, 0, 0.0)
    finally:
        model.train(was_training)
    failures = float(failed is not None)
    if reduce is not None:
        correct, total, loss_sum, failures = reduce([correct, total, loss_sum, failures], device)
    if failures:
        raise failed or DataError("another process could not read a test sample (see its line)")
    total = max(total, 1)
    return {"top1": 100.0 * correct / total, "loss": loss_sum / total, "samples": float(total)}


def _sums(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    check_finite: str | None,
) -> tuple[int, int, float]:
    """Correct predictions, samples and the summed cross-entropy over ``loader``."""
    correct = total = 0
    loss_sum = 0.0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if check_finite:  # positions in this process's (unshuffled) test shard
            check_finite_batch(x, torch.arange(total, total + len(y)), "test", check_finite)
        with torch.autocast(
            device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
        ):
            logits = model(x)
        loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        total += y.numel()
    return correct, total, loss_sum
