"""``spikedistill demo``."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(out=args.out, data_dir=args.data_dir, seed=args.seed)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo", help="distil a spiking student from an ANN teacher (digits, or MNIST)"
    )
    demo.add_argument("--out", help="run directory (default: runs/demo-<time>)")
    demo.add_argument("--data-dir", help="a data root holding MNIST (else the bundled digits)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=run)
