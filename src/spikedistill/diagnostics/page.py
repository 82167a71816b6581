"""The report's files: ``report.md`` with the PNGs beside it and a self-contained
``report.html``: the summary table, the config keys that differ between the runs, the notes and
the figures (accuracy, energy, loss terms, firing rates on one colour scale, SASTC attention,
SAMD maps)."""

from __future__ import annotations

import base64
import dataclasses
import html
import os
from pathlib import Path

from .runs import file_stems, unique_names
from .table import RunDiagnostics, config_diff_rows, summary_rows

_SAME = "The runs' configs are the same (or there is one run)."


def shared_scales(runs: list[RunDiagnostics]) -> tuple[float, tuple[float | None, float | None]]:
    """The top of the colour scale every run's heatmap of one kind shares: firing rates, and
    (student SAM, teacher CAM) of SAMD (``None`` without any)."""
    rates = [max(v, default=0.0) for r in runs for v in r.rates.values()]
    maps = [r.maps for r in runs if r.maps is not None]
    sam, cam = (max(float(m[i].max()) for m in maps) if maps else None for i in (1, 2))
    return (max(rates, default=0.0) or 1.0), (sam, cam)


def _figures(runs: list[RunDiagnostics], out: Path) -> list[tuple[str, str]]:
    """Every PNG of the report into ``out``: ``(caption, file name)``; one file per run and
    figure, even for runs of the same name."""
    from ..viz.curves import plot_runs
    from ..viz.diagnostics import plot_attention, plot_energy, plot_firing, plot_maps, plot_terms

    figures = [("Test accuracy per epoch and best top-1", "accuracy.png")]
    summaries = {r.name: r.summary for r in runs}
    plot_runs(summaries, out / "accuracy.png")
    energies = {r.name: r.ops.energy_pj * 1e-12 for r in runs if r.ops is not None}
    if plot_energy(energies, out / "energy.png"):
        figures.append(("Energy per sample", "energy.png"))
    vmax, map_scales = shared_scales(runs)
    if plot_terms(summaries, out / "loss_terms.png"):
        figures.append(("Training loss terms (and STM) per epoch", "loss_terms.png"))
    for r, stem in zip(runs, file_stems([r.name for r in runs]), strict=True):
        if r.rates:
            plot_firing(r.rates, out / f"firing_{stem}.png", f"{r.name}: firing rates", vmax)
            figures.append((f"{r.name}: firing rate per layer and time step", f"firing_{stem}.png"))
        if r.attention is not None:
            plot_attention(*r.attention, out / f"sastc_attention_{stem}.png")
            figures.append(
                (f"{r.name}: SASTC attention (batch mean)", f"sastc_attention_{stem}.png")
            )
        if r.maps is not None:
            plot_maps(*r.maps, out / f"samd_maps_{stem}.png", map_scales)
            figures.append((f"{r.name}: student SAM vs teacher CAM", f"samd_maps_{stem}.png"))
    return figures


def linked_figures(report_md: Path) -> set[str]:
    """The PNGs a ``report.md`` shows, by file name (none without the file)."""
    if not report_md.is_file():
        return set()
    lines = report_md.read_text(errors="replace").splitlines()
    links = [line.rsplit("](", 1) for line in lines if line.startswith("![") and "](" in line]
    names = {target.removesuffix(")") for _, target in links}
    return {n for n in names if n.endswith(".png") and Path(n).name == n}


def write_report(
    runs: list[RunDiagnostics], out: str | os.PathLike, command: str = ""
) -> tuple[Path, Path]:
    """``report.md`` + PNGs and a self-contained ``report.html`` in ``out``; ``command``, the
    command line that made it, is quoted at the top. The files appear together or not at all;
    the figures of a report they replace that this one lacks are removed."""
    from ..viz.output import staged_files

    names = unique_names([r.name for r in runs])
    runs = [dataclasses.replace(r, name=n) for r, n in zip(runs, names, strict=True)]
    out = Path(out)
    older = linked_figures(out / "report.md")
    with staged_files(out) as stage:
        figures = _figures(runs, stage)
        rows, diff = summary_rows(runs), config_diff_rows(runs)
        notes = [f"{r.name}: {n}" for r in runs for n in r.notes]
        made = f"Made with `{command}`. " if command else ""
        intro = (
            f"{made}Firing rate: mean over layers and steps; SOPs, MACs and energy per sample "
            "(methods in `spikedistill.diagnostics.energy`); STM against the run's teacher on "
            "one test batch, as the SASTC paper defines it (natural log of the mean squared "
            "difference of raw Gram matrices, docs/methods.md §2.7); STM last 10: the mean of "
            "the last 10 per-epoch STMs of training (train.stm_every), its definition in brackets. "
            "n/a: the figure does not apply (SOPs and firing rate of an ANN, T/backprop/neuron of "
            "an ANN, STM and teacher energy without a teacher). Runs that differ only by "
            "train.seed (and name) share a row: mean ± sample std over the seeds."
        )
        md = ["# spikedistill report", "", intro, "", _md_table(rows), ""]
        md += ["## What differs", "", _md_table(diff) if len(diff) > 1 else _SAME, ""]
        md += [f"- {n}" for n in notes] + ([""] if notes else [])
        for caption, name in figures:
            md += [f"## {caption}", "", f"![{caption}]({name})", ""]
        (stage / "report.md").write_text("\n".join(md))
        page = _html(intro, (rows, diff), notes, [(c, stage / n) for c, n in figures])
        (stage / "report.html").write_text(page)
    for name in older - {name for _, name in figures}:
        (out / name).unlink(missing_ok=True)
    return out / "report.md", out / "report.html"


def _md_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def _html_table(rows: list[list[str]], table_id: str) -> str:
    esc = html.escape
    table = f"<table id='{table_id}'>\n<tr>" + "".join(f"<th>{esc(c)}</th>" for c in rows[0])
    table += "</tr>\n" + "".join(
        "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>\n" for r in rows[1:]
    )
    return table + "</table>"


def _html(intro, tables, notes, figures) -> str:
    esc = html.escape
    rows, diff = tables
    body = ["<h1>spikedistill report</h1>", f"<p>{esc(intro)}</p>", _html_table(rows, "summary")]
    body.append("<h2>What differs</h2>")
    body.append(_html_table(diff, "config-diff") if len(diff) > 1 else f"<p>{esc(_SAME)}</p>")
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
