"""The embedded default: distil a spiking student from an ANN teacher, offline, on 2 CPU cores.

Trains a small ANN teacher, then the same small spiking student three times from a reduced,
class-balanced training set (where a teacher's guidance matters): with cross-entropy only
(``none``), with logit KD (``kd``) and with KD + SASTC (``kd+sastc``). Uses scikit-learn's
bundled 8x8 digits, or MNIST when ``data_dir`` holds it. Prints a table, writes a plot.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .data import build_datasets
from .engine.config import config_from_dict
from .engine.run_dir import claim_run_dir, default_run_dir
from .engine.trainer import Trainer
from .errors import DataError
from .viz.curves import plot_runs

METHODS = {"none": "none", "kd": "kd", "kd+sastc": "kd+sastc"}

# Per dataset: teacher / student settings sized for under two minutes on 2 CPU cores.
PLANS: dict[str, dict[str, Any]] = {
    "digits": {
        "teacher": {"epochs": 15, "subset": None, "batch": 32},
        "student": {"epochs": 25, "subset": 200, "batch": 32, "T": 4, "eval_every": 1},
    },
    "mnist": {
        "teacher": {"epochs": 2, "subset": 12000, "batch": 128},
        "student": {"epochs": 8, "subset": 1000, "batch": 64, "T": 2, "eval_every": 4},
    },
}


def _config(
    name: str, dataset: str, root: str | None, spiking: bool, plan: dict, seed: int, **extra
):
    width = 16 if not spiking else 8
    return config_from_dict(
        {
            "name": name,
            "data": {
                "name": dataset,
                "root": root,
                "batch_size": plan["batch"],
                "eval_batch_size": 1000,
                "train_subset": plan["subset"],
            },
            "model": {
                "name": "convnet3",
                "spiking": spiking,
                "T": plan.get("T", 4),
                "options": {"width": width},
            },
            "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
            "sched": {"name": "cosine"},
            "train": {
                "epochs": plan["epochs"],
                "seed": seed,
                "eval_every": plan.get("eval_every", 1),
            },
            **extra,
        }
    )


def pick_dataset(data_dir: str | None) -> str:
    if data_dir:
        try:
            build_datasets("mnist", data_dir)
            return "mnist"
        except DataError:
            pass
    return "digits"


def _train(cfg: Any, folder: Path) -> dict:
    """One run of the demo, in its own locked folder (another run there is refused)."""
    print(f"\n{folder.name}:")  # the epoch lines that follow are this run's
    with claim_run_dir(folder):
        return Trainer(cfg, folder).fit()


def run_demo(out: str | None = None, data_dir: str | None = None, seed: int = 0) -> dict:
    dataset = pick_dataset(data_dir)
    out_dir = Path(out) if out else default_run_dir("demo")
    with claim_run_dir(out_dir, created=not out):
        return _run_demo(dataset, out_dir, data_dir, seed)


def _run_demo(dataset: str, out_dir: Path, data_dir: str | None, seed: int) -> dict:
    plan = PLANS[dataset]
    start = time.perf_counter()
    print(f"demo on {dataset}: teacher and three spiking students, runs in {out_dir}")
    teacher_cfg = _config("teacher", dataset, data_dir, False, plan["teacher"], seed)
    summaries = {"teacher (ANN)": _train(teacher_cfg, out_dir / "teacher")}
    teacher = {
        "name": "convnet3",
        "checkpoint": str(out_dir / "teacher" / "best.pt"),
        "options": {"width": 16},
    }
    for label, method in METHODS.items():
        cfg = _config(
            label,
            dataset,
            data_dir,
            True,
            plan["student"],
            seed,
            **({"teacher": teacher} if method != "none" else {}),
            distill={"method": method},
        )
        summaries[label] = _train(cfg, out_dir / label)
    plot_runs(summaries, out_dir / "comparison.png")
    s = plan["student"]
    print(
        f"\nstudents: spiking convnet3 (T={s['T']}) trained on {s['subset']} samples; "
        f"teacher: ANN convnet3 on {plan['teacher']['subset'] or 'all'} samples"
    )
    print(f"{'run':<16}{'best top-1':>12}{'last top-1':>12}")
    for label, summary in summaries.items():
        print(f"{label:<16}{summary['best_top1']:>11.2f}%{summary['last_top1']:>11.2f}%")
    print(f"plot: {out_dir / 'comparison.png'}  ({time.perf_counter() - start:.0f}s in all)")
    return summaries
