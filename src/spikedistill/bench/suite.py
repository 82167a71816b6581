"""``spikedistill bench``: training-step time, inference time and peak step memory of the
variants (``variants.py``) over a list of ``T``, as a Markdown table, a CSV and a plot.

Times are medians of interleaved repetitions in one process; memory is measured per variant
in a fresh process (``memory.py``). Ratios are to the ANN limit and to SpikingJelly.
"""

from __future__ import annotations

import csv
import platform
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..errors import ConfigError
from .memory import fresh_process_peak
from .timing import interleaved_medians, interleaved_times, spread
from .variants import VARIANTS, BenchSpec, Variant

LABELS = {
    "limit": "ANN limit (batch T*B)",
    "bptt": "spikedistill BPTT",
    "bptt_checkpoint": "spikedistill BPTT, block checkpoints",
    "rate": "spikedistill Rate-BP",
    "spikingjelly": "SpikingJelly LIFNode BPTT",
}


def _build(spec: BenchSpec, names: Sequence[str]) -> dict[str, Variant]:
    built = {}
    for name in names:
        try:
            built[name] = VARIANTS.get(name)(spec)
        except ConfigError as err:  # an optional comparison that is not installed
            if name != "spikingjelly":
                raise
            print(f"skipping {name}: {err}")
    return built


#: backends whose first step does one-time work: what the warm-up step is for
FIRST_STEP_WORK = {"compile": "compilation", "cpp": "loading the C++ kernels"}


def memory_warmup(spec: BenchSpec) -> int:
    """Warm-up steps before a memory point, the same for every variant of a table: one on a
    backend whose first step does one-time work (``FIRST_STEP_WORK``), else none (the issue's
    protocol). The warm-up also takes first-use allocations out of every variant (oneDNN's,
    about 19 MB on the MNIST net's limit)."""
    return 1 if spec.backend in FIRST_STEP_WORK else 0


def run_point(spec: BenchSpec, names: Sequence[str], reps: int, memory: bool) -> list[dict]:
    """Rows ``{T, variant, neurons, train_s, infer_s, peak_mb}`` for one ``T`` (ratios added
    later)."""
    variants = _build(spec, names)
    neurons = {n: v.neurons for n, v in variants.items()}
    train_times = interleaved_times({n: v.train for n, v in variants.items()}, reps=reps)
    train = {n: statistics.median(ts) for n, ts in train_times.items()}
    infer = interleaved_medians(
        {n: v.infer for n, v in variants.items() if v.infer is not None}, reps=reps
    )
    del variants
    rows = []
    for name in train:
        peak = fresh_process_peak(spec, name, warmup=memory_warmup(spec)) if memory else None
        peak = None if peak is None else peak / 2**20
        rows.append(
            dict(
                T=spec.T,
                variant=name,
                neurons=neurons[name],
                train_s=train[name],
                train_spread=spread(train_times[name]),
                infer_s=infer.get(name),
                peak_mb=peak,
            )
        )
    return rows


def add_ratios(rows: list[dict]) -> list[dict]:
    """``train_vs_limit``, ``train_vs_sj``, ``mem_vs_limit``, ``mem_vs_sj`` per row."""
    for row in rows:
        same_T = {r["variant"]: r for r in rows if r["T"] == row["T"]}
        for ref, suffix in (("limit", "limit"), ("spikingjelly", "sj")):
            other = same_T.get(ref)
            for key, out in (("train_s", "train"), ("peak_mb", "mem")):
                ok = other is not None and row[key] is not None and other[key]
                row[f"{out}_vs_{suffix}"] = row[key] / other[key] if ok else None
    return rows


def run(
    spec: BenchSpec,
    Ts: Sequence[int],
    names: Sequence[str],
    reps: int = 5,
    memory: bool = True,
    on_point: Callable[[list[dict]], object] | None = None,
) -> list[dict]:
    """Every ``T``'s rows, with ratios, in order of ``T``; ``on_point`` gets the rows so far
    after each ``T`` (to write them: a run stopped later keeps its finished points, so the
    points that matter most can be asked for first)."""
    rows: list[dict] = []
    for T in Ts:
        rows += run_point(spec.replace(T=T), names, reps, memory)
        rows.sort(key=lambda row: row["T"])  # stable: variants keep their order
        if on_point is not None:
            on_point(add_ratios([dict(r) for r in rows]))
        print(f"T={T} done" + (" and written" if on_point else ""), flush=True)
    return add_ratios(rows)


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _label(row: dict, spec: BenchSpec) -> str:
    """The variant's name, with what runs its neurons where that is not ``spec.backend``."""
    label = LABELS.get(row["variant"], row["variant"])
    neurons = row.get("neurons")
    return f"{label} ({neurons})" if neurons and neurons != spec.backend else label


def _memory_protocol(rows: list[dict], spec: BenchSpec) -> str:
    if all(r["peak_mb"] is None for r in rows):
        return "memory: not measured (--no-memory)."
    warmup = memory_warmup(spec)
    return "memory: peak of a training step above the baseline, a fresh process per point" + (
        f", after one warm-up step ({FIRST_STEP_WORK[spec.backend]}) whose peak is forgotten."
        if warmup
        else "."
    )


def _mb_digits(value: float | None) -> int:
    """Whole MB, or two decimals below 10 MB (tiny nets: a 0 would hide their ratios)."""
    return 0 if value is None or value >= 10 else 2


#: a relative interquartile range of train times above which the table warns
NOISY = 0.25


def markdown(rows: list[dict], spec: BenchSpec, command: str) -> str:
    device = torch.cuda.get_device_name() if spec.device.startswith("cuda") else "CPU"
    lines = [
        f"### {spec.model}, batch {spec.batch}, input {spec.in_channels}x{spec.size}x{spec.size},"
        f" neuron {spec.neuron} on the {spec.backend} backend, {device}",
        "",
        f"`{command}`; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.machine()}. Train/inference: median seconds of interleaved repetitions "
        "(±: their interquartile range over the median, n/a under 4 repetitions; inference "
        "n/a: the same forward as BPTT's); " + _memory_protocol(rows, spec),
        "",
        "| T | variant | train s | ± | / limit | / SJ | infer s | peak MB | mem / limit "
        "| mem / SJ |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['T']} | {_label(r, spec)} | {_fmt(r['train_s'], 3)} | {_percent(r)} | "
            f"{_fmt(r['train_vs_limit'], 3)} | {_fmt(r['train_vs_sj'], 3)} | "
            f"{_fmt(r['infer_s'], 3)} | {_fmt(r['peak_mb'], _mb_digits(r['peak_mb']))} | "
            f"{_fmt(r['mem_vs_limit'], 2)} | {_fmt(r['mem_vs_sj'], 2)} |"
        )
    noisy = sorted({_label(r, spec) for r in rows if (r["train_spread"] or 0) > NOISY})
    if noisy:
        lines += [
            "",
            f"Noisy: train times of {', '.join(noisy)} vary by more than {NOISY:.0%} (their "
            "interquartile range over the median, the ± column) between repetitions; the "
            "ratios are uncertain: a busy machine? Rerun with more --reps on a quiet one.",
        ]
    return "\n".join(lines) + "\n"


def _percent(row: dict) -> str:
    return "n/a" if row["train_spread"] is None else f"{100 * row['train_spread']:.0f}%"


def write_outputs(rows: list[dict], spec: BenchSpec, out: Path, command: str) -> str:
    """``out.md``, ``out.csv`` and ``out.png`` (together or not at all); returns the Markdown."""
    from ..viz.output import staged_files

    if not rows:
        raise ConfigError("nothing was measured: none of the --variants could run")
    text = markdown(rows, spec, command)
    with staged_files(out.parent) as stage:
        with open(stage / out.with_suffix(".csv").name, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        (stage / out.with_suffix(".md").name).write_text(text)
        plot(rows, spec, stage / out.with_suffix(".png").name)
    return text


def plot(rows: list[dict], spec: BenchSpec, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("train_vs_limit", "training step / ANN limit"),
        ("mem_vs_limit", "peak memory / ANN limit"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(11, 4))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for name in dict.fromkeys(r["variant"] for r in rows):
            pts = [(r["T"], r[key]) for r in rows if r["variant"] == name and r[key] is not None]
            if pts:
                row = next(r for r in rows if r["variant"] == name)
                ax.plot(*zip(*pts, strict=True), marker="o", label=_label(row, spec))
        Ts = sorted({r["T"] for r in rows})
        ax.set(xscale="log", xlabel="T", ylabel=label, title=f"{spec.model}, batch {spec.batch}")
        ax.set_xticks(Ts, [str(t) for t in Ts])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
