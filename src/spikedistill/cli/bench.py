"""``spikedistill bench``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .argtypes import json_object, output_stem, require_positive

if TYPE_CHECKING:
    from ..bench.variants import BenchSpec


def _spec(args: argparse.Namespace) -> BenchSpec:
    """The benchmark's spec from the arguments, checked (one error naming the flag)."""
    from ..bench.variants import VARIANTS, BenchSpec, check_spec
    from ..engine.setup import resolve_device
    from ..errors import ConfigError
    from ..spiking import choose_backend

    for name in args.variants:
        VARIANTS.get(name)  # unknown names fail before anything runs
    require_positive(args, "--T", "--batch", "--size", "--in-channels", "--reps")
    repeated = sorted({t for t in args.T if args.T.count(t) > 1})
    if repeated:
        raise ConfigError(f"--T: {', '.join(map(str, repeated))} given more than once")
    options = json_object(args.options, "--options")
    device = str(resolve_device(args.device, "--device"))
    backend = choose_backend(args.backend, device)  # resolves auto, checks the name
    spec = BenchSpec(
        model=args.model,
        T=min(args.T),
        batch=args.batch,
        size=args.size,
        in_channels=args.in_channels,
        neuron=args.neuron,
        backend=backend,
        options=options,
        device=device,
    )
    check_spec(spec)  # a bad model, option or input size fails here, with its message
    return spec


def run(args: argparse.Namespace) -> int:
    import shlex

    from ..bench.suite import run as run_suite
    from ..bench.suite import write_outputs

    out = output_stem(args.out, "--out")
    spec = _spec(args)
    command = "spikedistill " + shlex.join(args.argv)

    tables: list[str] = []

    def write(rows: list[dict]) -> None:
        tables.append(write_outputs(rows, spec, out, command))

    # written after every T: a run stopped later (a timeout, Ctrl-C) keeps its finished points
    run_suite(
        spec, args.T, args.variants, reps=args.reps, memory=not args.no_memory, on_point=write
    )
    text = tables[-1]
    print(text)
    print(f"wrote {out.with_suffix('.md')}, .csv and .png")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser(
        "bench", help="step time and memory against the ANN limit and SpikingJelly"
    )
    bench.add_argument(
        "--model", default="resnet19", help="a zoo model (`config schema` lists them)"
    )
    bench.add_argument(
        "--T",
        type=int,
        nargs="+",
        default=[1, 2, 4, 8],
        help="time steps, measured in this order and written after each (first what matters most)",
    )
    bench.add_argument("--batch", type=int, default=16)
    bench.add_argument("--size", type=int, default=32, help="input height and width")
    bench.add_argument("--in-channels", type=int, default=3)
    bench.add_argument("--neuron", default="tdbn", help="neuron preset")
    bench.add_argument(
        "--backend", default="auto", help="our neurons' backend: auto, torch, compile, cpp, triton"
    )
    bench.add_argument("--options", help="model options as JSON, e.g. '{\"width\": 16}'")
    bench.add_argument(
        "--variants",
        nargs="+",
        default=["limit", "bptt", "rate", "spikingjelly"],
        help="what to time: limit, bptt, bptt_checkpoint, rate, spikingjelly",
    )
    bench.add_argument(
        "--reps", type=int, default=5, help="timed repetitions (medians; a spread from 4 on)"
    )
    bench.add_argument("--no-memory", action="store_true", help="skip the memory points")
    bench.add_argument("--device", default="auto", help="cpu, cuda or auto")
    bench.add_argument("--out", default="bench", help="output stem: OUT.md, OUT.csv, OUT.png")
    bench.set_defaults(func=run)
