"""``spikedistill export``: a run's trained student as a NIR graph or an ONNX model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .argtypes import output_stem, require_positive


def _input_shape(text: str | None) -> tuple[int, ...] | None:
    """``--input-shape C,H,W`` (or ``T,C,H,W``) as integers >= 1; ``None`` when not given."""
    if text is None:
        return None
    try:
        dims = tuple(int(d) for d in text.split(","))
    except ValueError:
        dims = ()
    if len(dims) not in (3, 4) or min(dims) < 1:
        raise ConfigError(f"--input-shape must be C,H,W or T,C,H,W of integers >= 1, got {text!r}")
    return dims


def _output_file(args: argparse.Namespace) -> Path:
    """``--out``: a file name in a writable folder, not an existing file unless ``--force``."""
    out = output_stem(args.out, "--out", f"exports/model.{args.format}")
    if out.is_dir():
        raise ConfigError(f"--out {args.out!r} is a folder; give a file name")
    if out.exists() and not args.force:
        raise ConfigError(f"--out {args.out!r} exists; pass --force to overwrite it")
    return out


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The format options given on the command line (the exporter refuses those it lacks)."""
    require_positive(args, "--dt")
    return {} if args.dt is None else {"dt": args.dt}


def run(args: argparse.Namespace) -> int:
    from ..engine.load import load_model
    from ..interop.export import check_options, export_model

    options = _options(args)
    check_options(args.format, options)
    shape = _input_shape(args.input_shape)
    out = _output_file(args)
    model = load_model(args.run)
    summary = export_model(model, args.format, out, shape, **options)
    print(f"wrote {out} ({args.format}: {summary})")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser(
        "export", help="write a run's trained student as NIR (SNN) or ONNX (ANN or SNN)"
    )
    export.add_argument("run", help="a run directory (its best.pt, else last.pt) or a checkpoint")
    export.add_argument("--format", required=True, help="nir or onnx")
    export.add_argument("--out", required=True, help="the file to write")
    export.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    export.add_argument(
        "--input-shape", help="a sample's shape C,H,W (T,C,H,W: event frames); default: the run's"
    )
    export.add_argument("--dt", type=float, help="nir: the time step of the LIF mapping (1e-4)")
    export.set_defaults(func=run)
