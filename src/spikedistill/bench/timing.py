"""Side-by-side timing: steps of several variants, interleaved, medians of repetitions.

Timing on shared machines is noisy, so variants are compared by ratios of medians measured in
one process, never by absolute times.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


def train_step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    after: Callable[[], None] | None = None,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Callable[[], None]:
    """A closure running one SGD step of ``model`` on ``(x, y)``; ``forward`` replaces
    ``model`` for the loss (e.g. a ``RateBackprop`` view), ``after`` runs at the end."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    forward = forward or model
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(forward(x), y).backward()
        optimizer.step()
        if after is not None:
            after()

    return step


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def interleaved_medians(
    steps: dict[str, Callable[[], None]], reps: int = 5, warmup: int = 1
) -> dict[str, float]:
    """Median seconds per call of each step; one call of each per round, rounds repeated."""
    times = interleaved_times(steps, reps, warmup)
    return {name: statistics.median(ts) for name, ts in times.items()}


def spread(times: list[float]) -> float | None:
    """The interquartile range of ``times`` over their median (``None`` for fewer than 4)."""
    if len(times) < 4:
        return None
    q1, _, q3 = statistics.quantiles(times, n=4)
    return (q3 - q1) / statistics.median(times)


def interleaved_times(
    steps: dict[str, Callable[[], None]], reps: int = 5, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds of every call of each step; one call of each per round, rounds repeated."""
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(reps):
        for name, fn in steps.items():
            _sync()
            start = time.perf_counter()
            fn()
            _sync()
            times[name].append(time.perf_counter() - start)
    return times


def emit_table(lines: list[str], append_to: str | None = None) -> str:
    """Print a Markdown table (``lines``) and append it to ``append_to`` if given."""
    table = "\n".join(lines) + "\n"
    print(table)
    if append_to:
        with open(append_to, "a") as fh:
            fh.write(table + "\n")
    return table
