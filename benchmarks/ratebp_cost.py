"""Cost of a training step as T grows: BPTT against rate-based backprop (Rate-BP), on CPU.

Memory: one fresh process per (network, mode, T) point (``spikedistill.bench.memory``); peak
RSS during two training steps minus the RSS just before the first one, the median of
``--mem-reps`` processes. Time: both modes interleaved in one process per T, median of
``--reps`` steps. Writes a Markdown table, a CSV and a plot. ``--backend compile`` runs both
modes' neurons compiled (a warm-up step, whose peak is forgotten, compiles before memory is
measured).

    python benchmarks/ratebp_cost.py --out benchmarks/results/ratebp_cost
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch

from spikedistill.bench import VARIANTS, BenchSpec, interleaved_medians
from spikedistill.bench.memory import fresh_process_peak
from spikedistill.bench.suite import memory_warmup

NETS = {  # name -> benchmark point (T is set per row)
    "resnet19": BenchSpec("resnet19", batch=8, neuron="ratebp"),
    "convnet3": BenchSpec(
        "convnet3",
        batch=64,
        size=28,
        in_channels=1,
        neuron="ratebp",
        options={"width": 16, "head_pool": 7},
    ),
}
MODES = ("bptt", "rate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=list(NETS))
    parser.add_argument("--T", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--mem-reps", type=int, default=1)
    parser.add_argument(
        "--stored-steps", type=int, default=4, help="Rate-BP's train.rate_stored_steps"
    )
    parser.add_argument("--backend", default="torch", help="neuron backend of both modes")
    parser.add_argument("--out", default="benchmarks/results/ratebp_cost")
    args = parser.parse_args()
    rows = []
    for net in args.nets:
        for T in args.T:
            spec = NETS[net].replace(T=T, stored_steps=args.stored_steps, backend=args.backend)
            warmup = memory_warmup(spec)
            mem = {mode: fresh_process_peak(spec, mode, args.mem_reps, warmup) for mode in MODES}
            times = interleaved_medians(
                {mode: VARIANTS.get(mode)(spec).train for mode in MODES}, reps=args.reps
            )
            row = {"net": net, "T": T}
            for mode in MODES:
                row[f"{mode}_mem_mb"] = mem[mode] / 2**20
                row[f"{mode}_step_s"] = times[mode]
            rows.append(row)
            print(row, flush=True)
    write_outputs(rows, Path(args.out), args)


def write_outputs(rows: list[dict], out: Path, args) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"# Training-step cost vs T: BPTT and Rate-BP (CPU; {args.backend} backend; "
        f"stored_steps {args.stored_steps})",
        "",
        f"`python benchmarks/ratebp_cost.py --nets {' '.join(args.nets)} "
        f"--T {' '.join(map(str, args.T))} --reps {args.reps} --mem-reps {args.mem_reps} "
        f"--stored-steps {args.stored_steps} --backend {args.backend} --out {args.out}`"
        f"; torch {torch.__version__}, {torch.get_num_threads()} threads. Memory: peak RSS of two "
        "steps above the RSS before the first, a fresh process per point (median of "
        "--mem-reps). Time: median step, both modes interleaved in one process.",
        "",
        "| net (batch) | T | BPTT MB | Rate-BP MB | mem ratio | BPTT s | Rate-BP s | time ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        batch = NETS[r["net"]].batch
        lines.append(
            f"| {r['net']} ({batch}) | {r['T']} | {r['bptt_mem_mb']:.0f} | "
            f"{r['rate_mem_mb']:.0f} | {r['rate_mem_mb'] / r['bptt_mem_mb']:.2f} | "
            f"{r['bptt_step_s']:.3f} | {r['rate_step_s']:.3f} | "
            f"{r['rate_step_s'] / r['bptt_step_s']:.2f} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = sorted({r["net"] for r in rows})
    fig, axes = plt.subplots(2, len(nets), figsize=(5 * len(nets), 7), squeeze=False)
    for col, net in enumerate(nets):
        rs = [r for r in rows if r["net"] == net]
        Ts = [r["T"] for r in rs]
        for row, (key, label) in enumerate(
            (("mem_mb", "peak step memory (MB)"), ("step_s", "step time (s)"))
        ):
            ax = axes[row][col]
            for mode, name in (("bptt", "BPTT"), ("rate", "Rate-BP")):
                ax.plot(Ts, [r[f"{mode}_{key}"] for r in rs], marker="o", label=name)
            ax.set(xscale="log", xlabel="T", ylabel=label, title=f"{net}")
            ax.set_xticks(Ts, [str(t) for t in Ts])
            ax.minorticks_off()
            ax.grid(alpha=0.3)
            ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)


if __name__ == "__main__":
    main()
