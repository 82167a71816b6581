"""BPTT training-step time of a spiking zoo model against the ANN limit and SpikingJelly.

The limit is the same architecture as an ANN on batch ``T*B``: the convolutions an SNN step
cannot avoid. Variants run interleaved in one process; the table reports medians and ratios.

    python benchmarks/step_time.py --model resnet19 --T 4 --batch 16 --reps 5
    python benchmarks/step_time.py --model convnet3 --in-channels 1 --size 28 --T 4 --batch 32
"""

from __future__ import annotations

import argparse
import platform

import torch

from spikedistill.benchmark import emit_table, interleaved_medians, train_step
from spikedistill.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet19")
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--in-channels", type=int, default=3)
    parser.add_argument("--neuron", default="tdbn")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", help="append the Markdown table to this file")
    args = parser.parse_args()
    torch.manual_seed(0)
    T, B = args.T, args.batch
    shape = (args.in_channels, args.size, args.size)
    kwargs = dict(num_classes=10, in_channels=args.in_channels)
    ann = build_model(args.model, **kwargs)
    snn = build_model(args.model, spiking=True, T=T, neuron=args.neuron, **kwargs)
    y = torch.randint(0, 10, (B,))
    steps = {
        f"ANN limit (batch {T * B})": train_step(ann, torch.randn(T * B, *shape), y.repeat(T)),
        "spikedistill SNN (BPTT)": train_step(snn, torch.randn(B, *shape), y),
    }
    try:
        from spikedistill.interop.spikingjelly import reset, use_spikingjelly_neurons

        sj = use_spikingjelly_neurons(
            build_model(args.model, spiking=True, T=T, neuron=args.neuron, **kwargs)
        )
        steps["SpikingJelly LIFNode SNN (BPTT)"] = train_step(
            sj, torch.randn(B, *shape), y, after=lambda: reset(sj)
        )
    except Exception as err:  # optional comparison
        print(f"SpikingJelly comparison skipped: {err}")
    medians = interleaved_medians(steps, reps=args.reps)
    limit = next(iter(medians.values()))
    sj_time = medians.get("SpikingJelly LIFNode SNN (BPTT)")
    lines = [
        f"### {args.model}, T={T}, batch {B}, input {shape}, neuron {args.neuron}",
        f"`python benchmarks/step_time.py --model {args.model} --T {T} --batch {B} "
        f"--size {args.size} --in-channels {args.in_channels} --neuron {args.neuron} "
        f"--reps {args.reps}`; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}",
        "",
        "| variant | median step (s) | / ANN limit | / SpikingJelly |",
        "|---|---|---|---|",
    ]
    for name, seconds in medians.items():
        vs_sj = f"{seconds / sj_time:.3f}" if sj_time else "n/a"
        lines.append(f"| {name} | {seconds:.3f} | {seconds / limit:.3f} | {vs_sj} |")
    emit_table(lines, args.out)


if __name__ == "__main__":
    main()
