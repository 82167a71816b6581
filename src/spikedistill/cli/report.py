"""``spikedistill report``."""

from __future__ import annotations

import argparse

from .argtypes import output_folder, require_positive


def run(args: argparse.Namespace) -> int:
    import shlex

    from tqdm import tqdm

    from ..diagnostics.energy import energy_constants
    from ..diagnostics.report import analyze_run, write_report
    from ..diagnostics.runs import read_metrics, run_labels
    from ..engine.setup import resolve_device

    require_positive(args, "--batches", "--e-ac", "--e-mac")
    constants = energy_constants(args.energy, args.e_ac, args.e_mac)
    device = str(resolve_device(args.device, "--device"))
    out = output_folder(args.out, "--out")
    for run_dir in args.runs:  # every run's metrics.json checked before any is measured
        read_metrics(run_dir)
    labeled = list(zip(args.runs, run_labels(args.runs), strict=True))
    runs = [
        analyze_run(run_dir, args.data_dir, args.batches, constants, device, name=label)
        for run_dir, label in tqdm(labeled, desc="runs", disable=None)
    ]
    md, page = write_report(runs, out, "spikedistill " + shlex.join(args.argv))
    print(f"wrote {md} and {page}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser(
        "report", help="HTML + Markdown report of runs: accuracy, firing rates, SOPs, energy, STM"
    )
    report.add_argument("runs", nargs="+", help="run directories (holding metrics.json, best.pt)")
    report.add_argument(
        "--out", default="report", help="output folder (a report already in it is replaced)"
    )
    report.add_argument(
        "--data-dir", help="data root (else each run's data.root, else the folder it trained on)"
    )
    report.add_argument("--batches", type=int, default=4, help="test batches to measure on")
    report.add_argument("--energy", default="fp32", help="energy preset: fp32, fp16, int8")
    report.add_argument("--e-ac", type=float, help="energy of an accumulate (pJ)")
    report.add_argument("--e-mac", type=float, help="energy of a multiply-accumulate (pJ)")
    report.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    report.set_defaults(func=run)
