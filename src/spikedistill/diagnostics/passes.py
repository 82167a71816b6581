"""One evaluation pass of a model with a hook-based monitor attached."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import torch
from torch import nn


class Monitor(Protocol):
    def remove(self) -> None: ...


@torch.no_grad()
def monitored_pass(
    model: nn.Module,
    monitor: Monitor,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str = "cpu",
) -> None:
    """Run ``model`` in eval mode over ``batches``; then remove ``monitor``'s hooks and restore
    the model's mode (also on errors)."""
    was_training = model.training
    model.eval()
    try:
        for x, _ in batches:
            model(x.to(device))
    finally:
        monitor.remove()
        model.train(was_training)
