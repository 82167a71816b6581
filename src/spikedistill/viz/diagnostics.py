"""Figures of the diagnostics report (PNG files; matplotlib with the Agg backend)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .curves import epoch_axis


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_firing(
    rates: Mapping[str, Sequence[float]],
    path: str | os.PathLike,
    title: str,
    vmax: float | None = None,
) -> None:
    """Heatmap of firing rates, layers x time steps (colour scale 0 .. ``vmax``: the same for
    every run of a report), and the mean rate per layer, both with the layer names."""
    plt = _pyplot()
    names = list(rates)
    grid = np.array([list(rates[n]) for n in names])
    fig, (heat, bars) = plt.subplots(
        1, 2, figsize=(10, 0.35 * len(names) + 1.8), width_ratios=[3, 2], sharey=True
    )
    image = heat.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=vmax)
    heat.set(yticks=range(len(names)), yticklabels=names, xlabel="time step", title=title)
    heat.set_xticks(range(grid.shape[1]), [str(t + 1) for t in range(grid.shape[1])])
    fig.colorbar(image, ax=heat, label="firing rate")
    bars.barh(range(len(names)), grid.mean(1), color="C0")  # shares the heatmap's y axis
    bars.set(xlabel="mean firing rate", title="per layer", xlim=(0, vmax))
    bars.tick_params(labelleft=True)  # sharey hides them; every axis names its layers
    bars.set_yticks(range(len(names)), names)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_energy(energies: Mapping[str, float], path: str | os.PathLike) -> bool:
    """Bars of the energy per sample (joules) of each run, from zero, in one unit chosen for the
    largest; returns False (and writes nothing) without any."""
    if not energies:
        return False
    plt = _pyplot()
    top = max(energies.values())
    scale, unit = next(
        ((s, u) for s, u in ((1e-3, "mJ"), (1e-6, "µJ"), (1e-9, "nJ")) if top >= s), (1e-12, "pJ")
    )
    values = [v / scale for v in energies.values()]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(values) + 2), 3.5))
    drawn = ax.bar(list(energies), values, color=[f"C{i}" for i in range(len(values))])
    ax.bar_label(drawn, fmt="%.3g")
    ax.set(ylabel=f"energy / sample ({unit})", ylim=(0, max(values) * 1.15 or 1))
    ax.set_title("energy per sample")
    ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_attention(
    alpha: np.ndarray, student: Sequence[str], teacher: Sequence[str], path: str | os.PathLike
) -> None:
    """SASTC attention ``alpha [T, S, N]`` (batch mean): one heatmap per time step."""
    plt = _pyplot()
    steps = alpha.shape[0]
    fig, axes = plt.subplots(1, steps, figsize=(2.2 * steps + 1.5, 0.45 * len(student) + 1.8))
    axes = np.atleast_1d(axes)
    for t, ax in enumerate(axes):
        image = ax.imshow(alpha[t], vmin=0, vmax=1, cmap="magma")
        ax.set(title=f"t = {t + 1}", xticks=range(len(teacher)), yticks=range(len(student)))
        ax.set_xticklabels(teacher, rotation=60, ha="right", fontsize=7)
        ax.set_yticklabels(student if t == 0 else [], fontsize=7)
    axes[0].set_ylabel("student layer")
    fig.supxlabel("teacher layer", fontsize=9)
    fig.colorbar(image, ax=list(axes), label="attention")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_maps(
    images: np.ndarray,
    student: np.ndarray,
    teacher: np.ndarray,
    path: str | os.PathLike,
    vmax: tuple[float | None, float | None] = (None, None),
) -> None:
    """Rows of (input image, student spike activation map, teacher class activation map); the
    maps on the colour scales ``0 .. vmax`` (student's, teacher's: shared by a report's runs;
    ``None``: each image its own)."""
    plt = _pyplot()
    n = len(images)
    fig, axes = plt.subplots(n, 3, figsize=(6, 2 * n), squeeze=False)
    for i in range(n):
        img = images[i]
        img = img[0] if img.shape[0] == 1 else np.clip(img.transpose(1, 2, 0), 0, 1)
        for ax, data, title in zip(
            axes[i],
            (img, student[i], teacher[i]),
            ("input", "student SAM", "teacher CAM"),
            strict=True,
        ):
            if title == "input":
                ax.imshow(data, cmap="gray" if data.ndim == 2 else None)
            else:
                top = vmax[0] if title == "student SAM" else vmax[1]
                ax.imshow(data, cmap="jet", vmin=0 if top else None, vmax=top)
            ax.set_axis_off()
            if i == 0:
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_terms(summaries: Mapping[str, Mapping[str, Any]], path: str | os.PathLike) -> bool:
    """Per-term training losses per epoch (one panel per term, runs overlaid) and the STM per
    epoch when logged; returns False (and writes nothing) when no run logged any term."""
    plt = _pyplot()
    keys: list[str] = []
    for summary in summaries.values():
        for row in summary["history"]:
            keys += [k for k in row if (k.startswith("train_") or k == "stm") and k not in keys]
    keys = [k for k in keys if k not in ("train_top1",)]
    if not keys:
        return False
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        for i, (label, summary) in enumerate(summaries.items()):  # one colour per run
            pts = [(r["epoch"], r[key]) for r in summary["history"] if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", ms=3, color=f"C{i}", label=label)
        ax.set_title(key.removeprefix("train_"))
        epoch_axis(ax)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_axis_off()
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
