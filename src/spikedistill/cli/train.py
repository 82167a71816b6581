"""``spikedistill train``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError, RankError, StoppedError


def run(args: argparse.Namespace) -> int:
    from ..engine.config import load_config
    from ..engine.distributed import DistContext
    from ..engine.run_dir import claim_run_dir, default_run_dir
    from ..engine.run_paths import run_of_config
    from ..engine.schema import config_path
    from ..engine.trainer import Trainer

    cfg = load_config(args.config, args.overrides)
    config = config_path(args.config)  # the file of recipe:NAME
    launch = DistContext.describe_env()
    rank = launch.rank
    if not args.out and launch.enabled:
        raise ConfigError("under torchrun pass --out RUN_DIR (every process must use the same)")
    if args.out is not None and not args.out.strip():
        raise ConfigError("--out is empty; name a run folder")
    if args.resume and not args.out:  # a run's own config.yaml names the run
        run = run_of_config(config)
        if run is None:
            raise ConfigError(
                "--resume needs --out RUN_DIR (the run to continue), or that run's config.yaml"
            )
        args.out = str(run)
    run_dir = Path(args.out) if args.out else default_run_dir(Path(config).stem)
    claim = claim_run_dir(
        run_dir, resume=args.resume, config=config, lock=rank == 0, created=not args.out
    )
    with claim:
        trainer = Trainer(cfg, run_dir, data_dir=args.data_dir)
        try:
            resumed = args.resume and (run_dir / "last.pt").exists()
            if resumed:
                trainer.resume(force=args.force)
            args.release_warnings()  # set up: warnings now show as they come
            if rank == 0:  # a requeued job may start with --resume: say it starts afresh
                fresh = " (nothing to resume there yet: a new run)" * (args.resume and not resumed)
                print(f"run directory: {run_dir}{fresh}")
            summary = _fit(trainer, rank)
        except BaseException:
            trainer.close(failed=True)
            raise
        trainer.close()
    if rank == 0:
        print(
            f"done: best top-1 {summary['best_top1']:.2f}%, last top-1 "
            f"{summary['last_top1']:.2f}% ({summary['epochs']} epochs); "
            f"metrics in {run_dir / 'metrics.json'}"
        )
    return 0


def _fit(trainer, rank: int) -> dict:
    """``trainer.fit()``; under torchrun an error names its rank (it may be that rank's
    alone, e.g. a NaN in its shard, and every rank's line is printed)."""
    try:
        return trainer.fit()
    except StoppedError:  # every rank stops at once: rank 0 says so
        raise
    except Exception as err:
        if not trainer.dist.enabled:
            raise
        raise RankError(rank, err) from err


def add_parser(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a teacher or a student from a YAML config")
    train.add_argument(
        "config", help="experiment YAML file, or recipe:NAME (see 'spikedistill configs list')"
    )
    train.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=5")
    train.add_argument("--out", help="run directory (default: runs/<config>-<time>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--force", action="store_true", help="resume even if the config changed")
    train.add_argument("--data-dir", help="data root (else $SPIKEDISTILL_DATA, then ~/.cache)")
    train.set_defaults(func=run)
