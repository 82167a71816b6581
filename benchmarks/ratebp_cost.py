"""Cost of a training step as T grows: BPTT against rate-based backprop (Rate-BP), on CPU.

Memory: one fresh process per (network, mode, T) point; peak RSS during two training steps
minus the RSS just before the first one. Time: both modes interleaved in one process per T,
median of ``--reps`` steps. Writes a Markdown table, a CSV and a plot.

    python benchmarks/ratebp_cost.py --out benchmarks/results/ratebp_cost
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import torch

NETS = {  # name -> (model, options, input shape, batch)
    "resnet19": ("resnet19", {}, (3, 32, 32), 8),
    "convnet3": ("convnet3", {"in_channels": 1, "width": 16, "head_pool": 7}, (1, 28, 28), 64),
}


def make_step(net: str, mode: str, T: int):
    from spikedistill.models import build_model
    from spikedistill.spiking.ratebp import RateBackprop

    name, options, shape, batch = NETS[net]
    torch.manual_seed(0)
    model = build_model(name, 10, spiking=True, T=T, neuron="ratebp", **options)
    x, y = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))
    forward = RateBackprop(model) if mode == "rate" else model
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(forward(x), y).backward()
        optimizer.step()

    return step


def status_bytes(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process. ``VmHWM`` starts afresh at exec,
    unlike ``getrusage``'s ``ru_maxrss``, which a child inherits from its parent's peak."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_point(net: str, mode: str, T: int) -> None:
    """Run in a fresh process: prints the peak step memory above baseline, in bytes."""
    step = make_step(net, mode, T)
    baseline = status_bytes("VmRSS")
    step()
    step()
    peak = status_bytes("VmHWM")
    print(json.dumps({"peak_above_baseline": peak - baseline}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=list(NETS))
    parser.add_argument("--T", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/ratebp_cost")
    parser.add_argument("--point", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.point:
        net, mode, T = args.point
        memory_point(net, mode, int(T))
        return
    from spikedistill.benchmark import interleaved_medians

    rows = []
    for net in args.nets:
        for T in args.T:
            mem = {}
            for mode in ("bptt", "rate"):
                out = (
                    subprocess.run(
                        [sys.executable, __file__, "--point", net, mode, str(T)],
                        check=True,
                        capture_output=True,
                        text=True,
                    )
                    .stdout.strip()
                    .splitlines()[-1]
                )
                mem[mode] = json.loads(out)["peak_above_baseline"]
            steps = {mode: make_step(net, mode, T) for mode in ("bptt", "rate")}
            times = interleaved_medians(steps, reps=args.reps, warmup=1)
            row = {"net": net, "T": T}
            for mode in ("bptt", "rate"):
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
        "# Training-step cost vs T: BPTT and Rate-BP (CPU)",
        "",
        f"`python benchmarks/ratebp_cost.py --T {' '.join(map(str, args.T))} --reps {args.reps}`"
        f"; torch {torch.__version__}, {torch.get_num_threads()} threads. Memory: peak RSS of two "
        "steps above the RSS before the first, a fresh process per point. Time: median step, "
        "both modes interleaved in one process.",
        "",
        "| net (batch) | T | BPTT MB | Rate-BP MB | mem ratio | BPTT s | Rate-BP s | time ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        batch = NETS[r["net"]][3]
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
            ax.grid(alpha=0.3)
            ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)


if __name__ == "__main__":
    main()
