"""Accuracy curves of several runs side by side with their best top-1."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any


def epoch_axis(ax: Any) -> None:
    """Label ``ax``'s x axis "epoch", with whole epochs as ticks (not 1.5, 2.5)."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_runs(summaries: Mapping[str, Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Left: test top-1 per epoch of every run; right: best top-1 per run (axis from 0).
    Writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, bars) = plt.subplots(1, 2, figsize=(10, 4), width_ratios=[3, 2])
    for i, (label, summary) in enumerate(summaries.items()):  # one colour per run
        points = [(r["epoch"], r.get("test_top1")) for r in summary["history"]]
        points = [(e, a) for e, a in points if a is not None]
        if points:  # a run not tested yet has none
            curves.plot(*zip(*points, strict=True), marker="o", ms=3, color=f"C{i}", label=label)
    curves.set(ylabel="test top-1 (%)", title="test accuracy")
    epoch_axis(curves)
    curves.grid(alpha=0.3)
    if curves.lines:
        curves.legend()
    best = {k: s.get("best_top1") for k, s in summaries.items()}
    best = {k: v for k, v in best.items() if v is not None}
    colours = [f"C{i}" for i, k in enumerate(summaries) if k in best]
    drawn = bars.bar(list(best), list(best.values()), color=colours)
    bars.bar_label(drawn, fmt="%.2f")
    bars.set(ylim=(0.0, 105.0), ylabel="best top-1 (%)")  # from zero: no exaggerated gaps
    bars.set_title("best test top-1")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
