"""Evaluation over a whole test loader: top-1 accuracy and mean cross-entropy."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

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
    ``check_finite`` (the dataset's name): refuse non-finite inputs, naming the test sample."""
    was_training = model.training
    model.eval()
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
    model.train(was_training)
    if reduce is not None:
        correct, total, loss_sum = reduce([correct, total, loss_sum], device)
    total = max(total, 1)
    return {"top1": 100.0 * correct / total, "loss": loss_sum / total, "samples": float(total)}
