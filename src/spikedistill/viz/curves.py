"""Accuracy curves of several runs side by side with their best top-1."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any


def plot_runs(summaries: Mapping[str, Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Left: test top-1 per epoch of every run; right: best top-1 per run. Writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, bars) = plt.subplots(1, 2, figsize=(10, 4), width_ratios=[3, 2])
    for label, summary in summaries.items():
        points = [(r["epoch"], r["test_top1"]) for r in summary["history"]]
        points = [(e, a) for e, a in points if a is not None]
        curves.plot(*zip(*points, strict=True), marker="o", markersize=3, label=label)
    curves.set(xlabel="epoch", ylabel="test top-1 (%)", title="test accuracy")
    curves.grid(alpha=0.3)
    curves.legend()
    labels = list(summaries)
    best = [summaries[k]["best_top1"] for k in labels]
    drawn = bars.bar(labels, best, color=[f"C{i}" for i in range(len(labels))])
    bars.bar_label(drawn, fmt="%.2f")
    low = min(best)
    bars.set(ylim=(max(0.0, low - 5), min(100.0, max(best) + 2)), ylabel="best top-1 (%)")
    bars.set_title("best test top-1")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
