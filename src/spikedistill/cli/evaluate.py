"""``spikedistill evaluate``."""

from __future__ import annotations

import argparse
import json

from ..errors import SpikeDistillError


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import load_checkpoint
    from ..data import build_datasets, make_loader
    from ..engine.config import config_from_dict
    from ..engine.evaluate import evaluate
    from ..engine.setup import build_student, resolve_device

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
    device = resolve_device(args.device, "--device")
    model.to(device)
    loader = make_loader(test_set, args.batch_size, train=False, info=info)
    result = evaluate(model, loader, device)
    if args.stm:
        from ..engine.run_stm import stm_of_run

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


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    ev.set_defaults(func=run)
