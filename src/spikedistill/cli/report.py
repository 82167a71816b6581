"""``spikedistill report``."""

from __future__ import annotations

import argparse

from ..errors import ConfigError


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..diagnostics.energy import energy_constants
    from ..diagnostics.report import analyze_run, write_report
    from ..engine.setup import resolve_device

    if args.batches < 1:
        raise ConfigError("--batches must be >= 1")
    constants = energy_constants(args.energy, args.e_ac, args.e_mac)
    device = str(resolve_device(args.device, "--device"))
    runs = [
        analyze_run(run, args.data_dir, args.batches, constants, device)
        for run in tqdm(args.runs, desc="runs", disable=None)
    ]
    import shlex

    md, page = write_report(runs, args.out, "spikedistill " + shlex.join(args.argv))
    print(f"wrote {md} and {page}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser(
        "report", help="HTML + Markdown report of runs: accuracy, firing rates, SOPs, energy, STM"
    )
    report.add_argument("runs", nargs="+", help="run directories (holding metrics.json, best.pt)")
    report.add_argument("--out", default="report", help="output folder")
    report.add_argument("--data-dir", help="data root (else the runs' data.root)")
    report.add_argument("--batches", type=int, default=4, help="test batches to measure on")
    report.add_argument("--energy", default="fp32", help="energy preset: fp32, fp16, int8")
    report.add_argument("--e-ac", type=float, help="energy of an accumulate (pJ)")
    report.add_argument("--e-mac", type=float, help="energy of a multiply-accumulate (pJ)")
    report.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    report.set_defaults(func=run)
