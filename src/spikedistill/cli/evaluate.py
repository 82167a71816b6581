"""``spikedistill eval``."""

from __future__ import annotations

import argparse
import json

from ..errors import ConfigError
from .argtypes import require_positive

STM_VARIANT_NAMES = ("paper", "normalized")  # metrics.stm.STM_VARIANTS (no torch import here)


def _check(args: argparse.Namespace) -> None:
    require_positive(args, "--T", "--batch-size", "--stm-batch")
    stm_only = [f for f in ("teacher", "teacher_checkpoint", "stm_batch") if getattr(args, f)]
    if stm_only and not args.stm:
        flag = "--" + stm_only[0].replace("_", "-")
        raise ConfigError(f"{flag} is for the STM: add --stm")


def run(args: argparse.Namespace) -> int:
    from ..data import make_loader
    from ..engine.evaluate import evaluate
    from ..engine.load import load_student, read_checkpoint, run_datasets
    from ..engine.setup import resolve_device

    _check(args)
    device = resolve_device(args.device, "--device")
    ckpt, cfg = read_checkpoint(args.checkpoint)
    name = args.data or cfg.data.name
    _, test_set, info = run_datasets(ckpt, cfg, args.data_dir, name)
    if args.T is not None:
        cfg.model.T = args.T
    model = load_student(ckpt, cfg, args.checkpoint, info).to(device)
    loader = make_loader(test_set, args.batch_size, train=False, info=info)
    result = evaluate(model, loader, device)
    if args.stm:
        result["stm"] = _stm(args, ckpt, cfg, model, test_set, info, device)
        result["stm_variant"] = args.stm_variant
    result.update(checkpoint=str(args.checkpoint), dataset=name, model=cfg.model.name)
    if cfg.model.spiking:
        result["T"] = cfg.model.T
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        stm = f", STM {result['stm']:.4f} ({args.stm_variant})" if "stm" in result else ""
        print(
            f"{cfg.model.name} on {name}: top-1 {result['top1']:.2f}% "
            f"({int(result['samples'])} samples), loss {result['loss']:.4f}{stm}"
        )
    return 0


def _stm(args, ckpt, cfg, model, test_set, info, device) -> float:
    """The STM of the evaluated model on one test batch (``--stm``)."""
    from ..data import make_loader
    from ..diagnostics.runs import first_batches
    from ..distill.teacher import recorded_model
    from ..engine.load import require_objective
    from ..engine.run_stm import stm_of_run

    teacher = args.teacher
    if args.teacher_checkpoint and not teacher:
        teacher = recorded_model(args.teacher_checkpoint)
        if teacher is None:
            raise ConfigError(
                f"--teacher-checkpoint {args.teacher_checkpoint!r} records no model (it is not "
                "a spikedistill run): pass --teacher, the architecture of its weights"
            )
    if not teacher and cfg.teacher.name:
        require_objective(ckpt, args.checkpoint)
    probe = make_loader(test_set, args.stm_batch or cfg.data.batch_size, train=False, info=info)
    ((x, y),) = first_batches(probe, 1, args.data or cfg.data.name)
    return stm_of_run(
        ckpt,
        cfg,
        model,
        x.to(device),
        y.to(device),
        info.num_classes,
        info.in_channels,
        teacher_name=teacher,
        teacher_checkpoint=args.teacher_checkpoint,
        variant=args.stm_variant,
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="evaluate a checkpoint on its test set")
    ev.add_argument("--checkpoint", required=True, help="a last.pt / best.pt of a run")
    ev.add_argument("--data", help="dataset name (default: the one it was trained on)")
    ev.add_argument("--data-dir", help="data root (else data.root, else the run's own)")
    ev.add_argument("--T", type=int, help="evaluate a spiking model at another T")
    ev.add_argument("--batch-size", type=int, default=1000)
    ev.add_argument("--device", default="auto")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    ev.add_argument(
        "--stm", action="store_true", help="also the STM score against the run's teacher"
    )
    ev.add_argument("--teacher", help="STM against this zoo teacher instead")
    ev.add_argument(
        "--teacher-checkpoint",
        help="weights of --teacher (a spikedistill run's: --teacher defaults to its model)",
    )
    ev.add_argument("--stm-batch", type=int, help="test images for STM (default: train batch)")
    ev.add_argument(
        "--stm-variant",
        choices=STM_VARIANT_NAMES,
        default="paper",
        help="STM definition (docs/methods.md §2.7): paper (SASTC: ln of the mean MSE of raw Gram "
        "matrices, the default) or normalized (the former: row-normalised Grams, summed over "
        "the layer pairs, linear)",
    )
    ev.set_defaults(func=run)
