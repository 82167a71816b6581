"""The ``spikedistill`` command line: ``train``, ``eval``, ``demo``, ``report``, ``bench``.

Mistakes (bad config, missing data, corrupt checkpoint, ...) print one line on stderr and exit
with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .errors import ConfigError, SpikeDistillError, is_out_of_memory

OOM_HINT = (
    "Lower data.batch_size or model.T, train with train.backprop=rate (memory does not grow "
    "with T), set model.options.checkpoint_blocks=true, or use train.amp=bf16"
)


def _train(args: argparse.Namespace) -> int:
    from .engine.config import load_config
    from .engine.trainer import Trainer

    cfg = load_config(args.config, args.overrides)
    if not args.out and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("under torchrun pass --out RUN_DIR (every process must use the same)")
    stem = Path(args.config).stem if args.config else cfg.name
    run_dir = Path(args.out or Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    has_run = (run_dir / "last.pt").exists() or (run_dir / "metrics.json").exists()
    if has_run and not args.resume:
        raise SpikeDistillError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose another --out"
        )
    trainer = Trainer(cfg, run_dir, data_dir=args.data_dir)
    try:
        if args.resume and (run_dir / "last.pt").exists():
            trainer.resume(force=args.force)
        main_process = trainer.dist.is_main
        if main_process:
            print(f"run directory: {run_dir}")
        summary = trainer.fit()
    finally:
        trainer.close()
    if main_process:
        print(
            f"done: best top-1 {summary['best_top1']:.2f}%, last top-1 "
            f"{summary['last_top1']:.2f}% ({summary['epochs']} epochs); "
            f"metrics in {run_dir / 'metrics.json'}"
        )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint
    from .data import build_datasets, make_loader
    from .engine.config import config_from_dict
    from .engine.evaluate import evaluate
    from .engine.setup import build_student, resolve_device

    ckpt = load_checkpoint(args.checkpoint)
    if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
        raise SpikeDistillError(
            f"{args.checkpoint} is not a spikedistill training checkpoint (no config/model)"
        )
    cfg = config_from_dict(ckpt["config"])
    name = args.data or cfg.data.name
    options = cfg.data.options if name == cfg.data.name else {}  # e.g. the frames of DVS data
    _, test_set, info = build_datasets(name, args.data_dir or cfg.data.root, **options)
    if args.T is not None:
        cfg.model.T = args.T
    model = build_student(cfg, info.num_classes, info.in_channels, info.time_steps)
    model.load_state_dict(ckpt["model"])
    device = resolve_device(args.device)
    model.to(device)
    loader = make_loader(test_set, args.batch_size, train=False, info=info)
    result = evaluate(model, loader, device)
    if args.stm:
        from .engine.run_stm import stm_of_run

        probe = make_loader(test_set, args.stm_batch or cfg.data.batch_size, train=False, info=info)
        x, y = next(iter(probe))
        result["stm"] = stm_of_run(
            ckpt,
            cfg,
            model,
            x.to(device),
            y.to(device),
            info.num_classes,
            info.in_channels,
            teacher_name=args.teacher,
            teacher_checkpoint=args.teacher_checkpoint,
        )
    result.update(checkpoint=str(args.checkpoint), dataset=name, model=cfg.model.name)
    if cfg.model.spiking:
        result["T"] = cfg.model.T
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        stm = f", STM {result['stm']:.4f}" if "stm" in result else ""
        print(
            f"{cfg.model.name} on {name}: top-1 {result['top1']:.2f}% "
            f"({int(result['samples'])} samples), loss {result['loss']:.4f}{stm}"
        )
    return 0


def _report(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .diagnostics.energy import energy_constants
    from .diagnostics.report import analyze_run, write_report
    from .engine.setup import resolve_device

    if args.batches < 1:
        raise ConfigError("--batches must be >= 1")
    constants = energy_constants(args.energy, args.e_ac, args.e_mac)
    device = str(resolve_device(args.device))
    runs = [
        analyze_run(run, args.data_dir, args.batches, constants, device)
        for run in tqdm(args.runs, desc="runs", disable=None)
    ]
    import shlex

    md, page = write_report(runs, args.out, "spikedistill " + shlex.join(args.argv))
    print(f"wrote {md} and {page}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(out=args.out, data_dir=args.data_dir, seed=args.seed)
    return 0


def _bench(args: argparse.Namespace) -> int:
    import shlex

    import torch

    from .bench.suite import run, write_outputs
    from .bench.variants import VARIANTS, BenchSpec

    for name in args.variants:
        VARIANTS.get(name)  # unknown names fail before anything runs
    if any(t < 1 for t in args.T) or args.batch < 1 or args.reps < 1:
        raise ConfigError("--T values, --batch and --reps must be >= 1")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    options = json.loads(args.options) if args.options else {}
    from .spiking import choose_backend

    backend = choose_backend(args.backend, device)  # resolves auto, checks the name
    spec = BenchSpec(
        model=args.model,
        batch=args.batch,
        size=args.size,
        in_channels=args.in_channels,
        neuron=args.neuron,
        backend=backend,
        options=options,
        device=device,
    )
    spec.build(spiking=True)  # a bad model or option fails here, with its message
    rows = run(spec, args.T, args.variants, reps=args.reps, memory=not args.no_memory)
    command = "spikedistill " + shlex.join(args.argv)
    text = write_outputs(rows, spec, Path(args.out), command)
    print(text)
    print(f"wrote {args.out}.md, .csv and .png")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a teacher or a student from a YAML config")
    train.add_argument("config", help="experiment YAML file (see configs/)")
    train.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=5")
    train.add_argument("--out", help="run directory (default: runs/<config>-<time>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--force", action="store_true", help="resume even if the config changed")
    train.add_argument("--data-dir", help="data root (else $SPIKEDISTILL_DATA, then ~/.cache)")
    train.set_defaults(func=_train)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="evaluate a checkpoint on its test set")
    ev.add_argument("--checkpoint", required=True, help="a last.pt / best.pt of a run")
    ev.add_argument("--data", help="dataset name (default: the one it was trained on)")
    ev.add_argument("--data-dir", help="data root")
    ev.add_argument("--T", type=int, help="evaluate a spiking model at another T")
    ev.add_argument("--batch-size", type=int, default=1000)
    ev.add_argument("--device", default="auto")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    ev.add_argument(
        "--stm", action="store_true", help="also the STM score against the run's teacher"
    )
    ev.add_argument("--teacher", help="STM against this zoo teacher instead")
    ev.add_argument("--teacher-checkpoint", help="weights of --teacher")
    ev.add_argument("--stm-batch", type=int, help="test images for STM (default: train batch)")
    ev.set_defaults(func=_eval)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo", help="distil a spiking student from an ANN teacher (digits, or MNIST)"
    )
    demo.add_argument("--out", help="run directory (default: runs/demo-<time>)")
    demo.add_argument("--data-dir", help="a data root holding MNIST (else the bundled digits)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)


def _add_report(sub: argparse._SubParsersAction) -> None:
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
    report.set_defaults(func=_report)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser(
        "bench", help="step time and memory against the ANN limit and SpikingJelly"
    )
    bench.add_argument("--model", default="resnet19")
    bench.add_argument("--T", type=int, nargs="+", default=[1, 2, 4, 8])
    bench.add_argument("--batch", type=int, default=16)
    bench.add_argument("--size", type=int, default=32, help="input height and width")
    bench.add_argument("--in-channels", type=int, default=3)
    bench.add_argument("--neuron", default="tdbn", help="neuron preset")
    bench.add_argument("--backend", default="auto", help="auto, torch, compile or cpp")
    bench.add_argument("--options", help="model options as JSON, e.g. '{\"width\": 16}'")
    bench.add_argument("--variants", nargs="+", default=["limit", "bptt", "rate", "spikingjelly"])
    bench.add_argument("--reps", type=int, default=5, help="timed repetitions (medians)")
    bench.add_argument("--no-memory", action="store_true", help="skip the memory points")
    bench.add_argument("--device", default="auto", help="cpu, cuda or auto")
    bench.add_argument("--out", default="bench", help="output stem: OUT.md, OUT.csv, OUT.png")
    bench.set_defaults(func=_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spikedistill", description="Train spiking networks by distillation from ANNs."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_eval, _add_demo, _add_report, _add_bench):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except (SpikeDistillError, OSError) as err:
        if args.debug:
            raise
        print(f"spikedistill: error: {err}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as err:
        if args.debug or not is_out_of_memory(err):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"spikedistill: error: out of memory ({first}). {OOM_HINT}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spikedistill: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
