"""``spikedistill report RUN_DIR [RUN_DIR ...]``: one page comparing training runs.

Per run it reads ``metrics.json`` and the best checkpoint, rebuilds the student and measures
on the first ``batches`` test batches: firing rates per layer and step, SOPs, MACs and energy
per sample (and the ANN teacher's energy), the STM against the run's teacher, and the method
diagnostics (SASTC attention, SAMD's student spike activation map next to the teacher's CAM).
It writes ``report.md`` (linking the PNGs beside it) and a self-contained ``report.html`` (the
same PNGs embedded).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SpikeDistillError, first_line
from .energy import OpsReport, count_ops
from .firing import firing_rates, mean_rate
from .runs import file_stems, first_batches, read_metrics, unique_names


@dataclass
class RunDiagnostics:
    name: str
    summary: dict[str, Any]
    rates: dict[str, list[float]] = field(default_factory=dict)
    ops: OpsReport | None = None
    teacher_ops: OpsReport | None = None
    stm: float | None = None
    attention: tuple[np.ndarray, list[str], list[str]] | None = None  # alpha [T, S, N], names
    maps: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # images, SAM, CAM
    notes: list[str] = field(default_factory=list)


def analyze_run(
    run: str | os.PathLike,
    data_dir: str | None = None,
    batches: int = 4,
    energy: tuple[float, float] = (0.9, 4.6),
    device: str = "cpu",
    name: str | None = None,
) -> RunDiagnostics:
    """Everything the report shows about one run directory (``name``: its label, else the
    folder name)."""
    from ..checkpoint import run_checkpoint
    from ..data import build_datasets, make_loader
    from ..engine.load import load_student, read_checkpoint

    run = Path(run)
    out = RunDiagnostics(name or run.name, read_metrics(run))
    path = run_checkpoint(run)
    ckpt, cfg = read_checkpoint(path)
    _, test_set, info = build_datasets(cfg.data.name, data_dir or cfg.data.root, **cfg.data.options)
    model = load_student(ckpt, cfg, path, info).to(device).eval()
    loader = make_loader(test_set, cfg.data.batch_size, train=False, info=info)
    data = first_batches(loader, batches, cfg.data.name)
    if cfg.model.spiking:
        out.rates = {k: v.tolist() for k, v in firing_rates(model, data, device).items()}
    out.ops = count_ops(model, data, device, *energy)
    if cfg.teacher.name:
        _teacher_diagnostics(out, ckpt, path, cfg, model, data, info, energy, device)
    return out


def _teacher_diagnostics(out, ckpt, path, cfg, model, data, info, energy, device) -> None:
    """The teacher's energy, the STM and the method diagnostics of a distilled run."""
    from ..distill.objective import DistillObjective
    from ..distill.stm_probe import stm_probe
    from ..engine.load import require_objective
    from ..engine.run_stm import stm_of_run, trained_objective
    from ..models import build_model

    teacher_arch = build_model(
        cfg.teacher.name, info.num_classes, in_channels=info.in_channels, **cfg.teacher.options
    )
    out.teacher_ops = count_ops(teacher_arch.to(device), data[:1], device, *energy)
    x, y = (t.to(device) for t in data[0])
    try:
        require_objective(ckpt, path)
        objective = trained_objective(ckpt, cfg, model, x, y, info.num_classes, info.in_channels)
        if not isinstance(objective, DistillObjective):  # no distillation: its teacher alone
            out.stm = stm_of_run(ckpt, cfg, model, x, y, info.num_classes, info.in_channels)
            return
    except SpikeDistillError as err:  # e.g. the teacher checkpoint is not on this machine
        out.notes.append(f"no teacher diagnostics: {first_line(err)}")
        return
    methods = dict(objective.methods)
    teacher = objective.teacher.model
    sastc = methods.get("sastc")
    out.stm = stm_probe(model, teacher, x, sastc=sastc)
    if sastc is not None:
        out.attention = _sastc_attention(objective, sastc, model, x)
    if "samd" in methods:
        out.maps = _samd_maps(methods["samd"], model, teacher, x[:4] if x.dim() == 4 else None)


@torch.no_grad()
def _sastc_attention(objective, sastc, model, x):
    """SASTC's attention on ``x``, averaged over the batch: ``[T, S, N]`` and the layer names."""
    from ..distill.stm_probe import probe_batch

    s_paths, t_paths = sastc.student_taps(), sastc.teacher_taps()
    batch = probe_batch(model, objective.teacher.model, x, s_paths, t_paths)
    return sastc.attention(batch).mean(1).cpu().numpy(), s_paths, t_paths


@torch.no_grad()
def _samd_maps(samd, model, teacher, x):
    """Student spike activation map and teacher CAM of up to 4 static images."""
    if x is None:
        return None
    from ..distill.objective import time_first_features
    from ..distill.samd import student_sam, teacher_cam
    from ..distill.taps import FeatureTaps

    s_taps, t_taps = (
        FeatureTaps(model, samd.student_taps()),
        FeatureTaps(teacher, samd.teacher_taps()),
    )
    try:
        t_logits = teacher(x)
        model(x)
        s_feat = s_taps.pop()[samd.student_taps()[0]]
        t_feat = t_taps.pop()[samd.teacher_taps()[0]]
    finally:
        s_taps.remove()
        t_taps.remove()
    path = samd.student_taps()[0]
    sam = student_sam(time_first_features({path: s_feat}, model, len(x))[path])
    cam = teacher_cam(t_feat, t_logits, teacher.get_submodule(samd.teacher_fc).weight)
    images = x.cpu().numpy()
    images = (images - images.min()) / max(float(np.ptp(images)), 1e-8)
    return images, sam.cpu().numpy(), cam.cpu().numpy()


# -- output ----------------------------------------------------------------------------------
def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _stm_last10(summary: dict[str, Any]) -> str:
    """The run's mean STM over its last 10 recorded epochs, with its definition."""
    value = summary.get("stm_last10")
    return "n/a" if value is None else f"{value:.4f} ({summary.get('stm_variant', 'paper')})"


def summary_rows(runs: list[RunDiagnostics]) -> list[list[str]]:
    head = ["run", "best top-1 (%)", "last top-1 (%)", "firing rate", "SOPs / sample",
            "MACs / sample", "energy (mJ)", "teacher energy (mJ)", "STM (paper, ln)",
            "STM last 10"]  # fmt: skip
    rows = [head]
    for r in runs:
        s = r.ops.summary() if r.ops else {}
        t = r.teacher_ops.summary() if r.teacher_ops else {}
        rows.append([
            r.name,
            _fmt(r.summary.get("best_top1"), ".2f"),
            _fmt(r.summary.get("last_top1"), ".2f"),
            _fmt(mean_rate({k: torch.tensor(v) for k, v in r.rates.items()}), ".4f")
            if r.rates else "n/a (ANN)",
            _fmt(s.get("sops"), ".3e"),
            _fmt(s.get("macs"), ".3e"),
            _fmt(s.get("energy_mj"), ".4f"),
            _fmt(t.get("energy_mj"), ".4f"),
            _fmt(r.stm, ".4f"),
            _stm_last10(r.summary),
        ])  # fmt: skip
    return rows


def _figures(runs: list[RunDiagnostics], out: Path) -> list[tuple[str, str]]:
    """Every PNG of the report into ``out``: ``(caption, file name)``; one file per run and
    figure, even for runs of the same name."""
    from ..viz.curves import plot_runs
    from ..viz.diagnostics import plot_attention, plot_firing, plot_maps, plot_terms

    figures = [("Test accuracy per epoch and best top-1", "accuracy.png")]
    summaries = {r.name: r.summary for r in runs}
    plot_runs(summaries, out / "accuracy.png")
    if plot_terms(summaries, out / "loss_terms.png"):
        figures.append(("Training loss terms (and STM) per epoch", "loss_terms.png"))
    for r, stem in zip(runs, file_stems([r.name for r in runs]), strict=True):
        if r.rates:
            plot_firing(r.rates, out / f"firing_{stem}.png", f"{r.name}: firing rates")
            figures.append((f"{r.name}: firing rate per layer and time step", f"firing_{stem}.png"))
        if r.attention is not None:
            plot_attention(*r.attention, out / f"sastc_attention_{stem}.png")
            figures.append(
                (f"{r.name}: SASTC attention (batch mean)", f"sastc_attention_{stem}.png")
            )
        if r.maps is not None:
            plot_maps(*r.maps, out / f"samd_maps_{stem}.png")
            figures.append((f"{r.name}: student SAM vs teacher CAM", f"samd_maps_{stem}.png"))
    return figures


def write_report(
    runs: list[RunDiagnostics], out: str | os.PathLike, command: str = ""
) -> tuple[Path, Path]:
    """``report.md`` + PNGs and a self-contained ``report.html`` in ``out``; ``command``, the
    command line that made it, is quoted at the top. The files appear together or not at all."""
    from ..viz.output import staged_files

    names = unique_names([r.name for r in runs])
    runs = [dataclasses.replace(r, name=n) for r, n in zip(runs, names, strict=True)]
    out = Path(out)
    with staged_files(out) as stage:
        figures = _figures(runs, stage)
        rows = summary_rows(runs)
        notes = [f"{r.name}: {n}" for r in runs for n in r.notes]
        made = f"Made with `{command}`. " if command else ""
        intro = (
            f"{made}Firing rate: mean over layers and steps; SOPs, MACs and energy per sample "
            "(methods in `spikedistill.diagnostics.energy`); STM against the run's teacher on "
            "one test batch, as the SASTC paper defines it (natural log of the mean squared "
            "difference of raw Gram matrices, docs/methods.md §2.7); STM last 10: the mean of "
            "the last 10 per-epoch STMs of training (train.stm_every), its definition in brackets."
        )
        md = ["# spikedistill report", "", intro, "", _md_table(rows), ""]
        md += [f"- {n}" for n in notes] + ([""] if notes else [])
        for caption, name in figures:
            md += [f"## {caption}", "", f"![{caption}]({name})", ""]
        (stage / "report.md").write_text("\n".join(md))
        page = _html(intro, rows, notes, [(c, stage / n) for c, n in figures])
        (stage / "report.html").write_text(page)
    return out / "report.md", out / "report.html"


def _md_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def _html(intro, rows, notes, figures) -> str:
    esc = html.escape
    table = "<table>\n<tr>" + "".join(f"<th>{esc(c)}</th>" for c in rows[0]) + "</tr>\n"
    table += "".join(
        "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>\n" for r in rows[1:]
    )
    table += "</table>"
    body = ["<h1>spikedistill report</h1>", f"<p>{esc(intro)}</p>", table]
    body += [f"<p class='note'>{esc(n)}</p>" for n in notes]
    for caption, path in figures:
        data = base64.b64encode(Path(path).read_bytes()).decode()
        body.append(
            f"<figure><img alt='{esc(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{esc(caption)}</figcaption></figure>"
        )
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:4px 8px}"
        "th{background:#eee}img{max-width:100%}figure{margin:1.5em 0}.note{color:#a60}"
    )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>spikedistill report</title>"
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
