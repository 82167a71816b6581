"""``spikedistill report RUN_DIR [RUN_DIR ...]``: one page comparing training runs.

Per run it reads ``metrics.json`` and the best checkpoint, rebuilds the student and measures
on the first ``batches`` test batches: firing rates per layer and step, SOPs, MACs and energy
per sample (and the ANN teacher's energy), the STM against the run's teacher, and the method
diagnostics (SASTC attention, SAMD's student spike activation map next to the teacher's CAM).
``diagnostics.page`` writes ``report.md`` (linking the PNGs beside it) and a self-contained
``report.html`` (the same PNGs embedded); ``diagnostics.table`` makes its tables.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import SpikeDistillError, first_line
from ..models.contract import other_neurons
from .energy import count_ops
from .firing import firing_rates
from .page import write_report
from .runs import first_batches, read_metrics
from .table import RunDiagnostics, summary_rows

__all__ = ["RunDiagnostics", "analyze_run", "summary_rows", "write_report"]


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
    from ..data import make_loader
    from ..engine.load import load_student, read_checkpoint, run_datasets

    run = Path(run)
    path = run_checkpoint(run)
    ckpt, cfg = read_checkpoint(path)
    out = RunDiagnostics(name or run.name, read_metrics(run), config=cfg.to_dict())
    _, test_set, info = run_datasets(ckpt, cfg, data_dir)
    model = load_student(ckpt, cfg, path, info).to(device).eval()
    neurons = other_neurons(model) if cfg.model.spiking else None
    if neurons:  # another library's, not the config's preset
        out.config["model"]["neuron"] = neurons
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
    from ..distill.teacher import teacher_options
    from ..engine.load import require_objective
    from ..engine.run_stm import stm_of_run, trained_objective
    from ..models import build_model

    t = cfg.teacher
    try:  # a teacher run given as its checkpoint brings its options, as in training
        options = teacher_options(t.name, t.checkpoint, t.options)
    except SpikeDistillError:  # its checkpoint is not on this machine: the config's
        options = t.options
    teacher_arch = build_model(t.name, info.num_classes, in_channels=info.in_channels, **options)
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
        FeatureTaps(model, samd.student_taps(), repeats="stack"),
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
    sam = student_sam(time_first_features({path: s_feat}, model, len(x), s_taps.runs)[path])
    cam = teacher_cam(t_feat, t_logits, teacher.get_submodule(samd.teacher_fc).weight)
    images = x.cpu().numpy()
    images = (images - images.min()) / max(float(np.ptp(images)), 1e-8)
    return images, sam.cpu().numpy(), cam.cpu().numpy()
