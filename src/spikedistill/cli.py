"""The ``spikedistill`` command line."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spikedistill", description="Train spiking networks by distillation from ANNs."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a small spiking CNN on the bundled digits")
    demo.add_argument("--epochs", type=int, default=8)
    demo.add_argument("--T", type=int, default=4, help="time steps")
    demo.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        run_demo(epochs=args.epochs, T=args.T, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
