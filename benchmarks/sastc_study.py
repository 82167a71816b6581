"""A study of SASTC's options on MNIST (CPU), on the protocol of ``distill_mnist.py``.

Same ANN ``resnet8`` teacher (``<runs>/teacher``, trained by ``distill_mnist.py`` or here if
missing) and the same spiking ``convnet3`` student recipe; each variant (a method plus SASTC
options) runs under one or more protocols:

- ``main``: distill_mnist's student protocol (1000 class-balanced images, 15 epochs, batch 64,
  T=2, ``tdbn`` neuron, SGD 0.05 momentum 0.9 wd 5e-4 cosine, tested once at the end);
- ``small-batch``: ``main`` at batch 16 (SASTC's Gram rows have B entries, its embedding B // 4);
- ``hard-T1`` / ``hard-T4``: 300 images, 30 epochs, batch 64, T = 1 or 4.

Per run it records last/best top-1, wall seconds, STM (first test batch; SASTC's own attention
for SASTC rows) and every ``train_<term>`` per epoch, in a resumable JSON (done keys are
skipped), then writes a Markdown table per protocol and a PNG (top-1 vs SASTC weight; loss terms
per epoch). The grid is the ``GRID`` table below.

    python benchmarks/sastc_study.py --data-dir ../shared/data --seeds 0 1 2
    python benchmarks/sastc_study.py --grid main --only warmup --seeds 0
    python benchmarks/sastc_study.py --grid main --variants kd "kd+sastc w=100 warmup 5" \
        --out benchmarks/results/sastc_study_part                # exact names, another file
    python benchmarks/sastc_study.py --extra-weights 50          # add kd+sastc w=50 everywhere
    python benchmarks/sastc_study.py --smoke                     # tiny check, writes to /tmp
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import matplotlib
import torch
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill_mnist import TEACHERS, mean_std, student_config, teacher_config
from spikedistill.data import build_datasets, make_loader
from spikedistill.distill import load_teacher
from spikedistill.distill.stm_probe import stm_probe
from spikedistill.engine.config import config_from_dict
from spikedistill.engine.trainer import Trainer
from spikedistill.errors import NonFiniteLossError


@dataclass(frozen=True)
class Protocol:
    key: str
    T: int
    subset: int  # class-balanced training images
    epochs: int
    batch: int
    about: str


@dataclass(frozen=True)
class Variant:
    name: str
    method: str
    sastc: dict[str, Any] = field(default_factory=dict)  # SASTC options (batch_size is added)


PROTOCOLS = {
    "main": Protocol("main", 2, 1000, 15, 64, "distill_mnist's student protocol"),
    "small-batch": Protocol("small-batch", 2, 1000, 15, 16, "main at batch 16"),
    "hard-T1": Protocol("hard-T1", 1, 300, 30, 64, "300 images, 30 epochs, T=1"),
    "hard-T4": Protocol("hard-T4", 4, 300, 30, 64, "300 images, 30 epochs, T=4"),
}
GRIDS = {"main": ["main"], "small-batch": ["small-batch"], "hard": ["hard-T1", "hard-T4"]}
HARD = ("hard-T1", "hard-T4")
EVERY = tuple(PROTOCOLS)


def sastc(weight: float, name: str = "", **options: Any) -> Variant:
    label = f"kd+sastc w={weight:g}" + (f" {name}" if name else "")
    return Variant(label, "kd+sastc", {"weight": float(weight), **options})


# (protocols, variant): the grid, in table order; extend here.
GRID: list[tuple[tuple[str, ...], Variant]] = [
    (EVERY, Variant("none", "none")),
    (EVERY, Variant("kd", "kd")),
    *[(("main",), sastc(w)) for w in (1, 3, 10, 30, 100, 800)],
    (EVERY, sastc(100, "warmup 5", warmup_epochs=5)),
    (("main",), sastc(30, "warmup 5", warmup_epochs=5)),
    (("main",), sastc(800, "warmup 5", warmup_epochs=5)),
    (EVERY, sastc(100, "warmup 5 teacher taps -2,-1", warmup_epochs=5, teacher_taps=[-2, -1])),
    (("main",), sastc(100, "warmup 5 conv1x1", warmup_epochs=5, regressor="conv1x1")),
    (("main",), sastc(100, "teacher taps -2,-1", teacher_taps=[-2, -1])),
    (("main",), sastc(10, "teacher taps -2,-1", teacher_taps=[-2, -1])),
    (("main",), sastc(100, "conv1x1", regressor="conv1x1")),
    (("main",), sastc(10, "conv1x1", regressor="conv1x1")),
    (("small-batch",), sastc(100)),
    (("small-batch",), sastc(100, "embed 16", embed_dim=16)),
    (("small-batch",), sastc(10)),
    *[(HARD, sastc(w)) for w in (10, 100)],
]
SMOKE_VARIANTS = ("none", "kd", "kd+sastc w=100")
TERMS_PLOT = (10, 100, 800)  # main, seed 0: loss terms per epoch in the right panel


def variants_of(protocol: str, extra_weights: list[float]) -> list[Variant]:
    """The grid's variants of ``protocol`` plus plain ``kd+sastc w=W`` for each extra weight."""
    found = [v for keys, v in GRID if protocol in keys]
    names = {v.name for v in found}
    return found + [sastc(w) for w in extra_weights if sastc(w).name not in names]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")


def settings(p: Protocol) -> dict[str, int]:
    return {"T": p.T, "subset": p.subset, "epochs": p.epochs, "batch": p.batch}


def config_of(p: Protocol, v: Variant, seed: int, checkpoint: str) -> dict[str, Any]:
    """distill_mnist's student config under protocol ``p``, with ``v``'s method and options."""
    shape = SimpleNamespace(batch=p.batch, subset=p.subset, epochs=p.epochs)
    cfg = student_config(shape, v.method, p.T, seed, "bptt", checkpoint)
    cfg["name"] = f"sastc-study-{p.key}-{slug(v.name)}-s{seed}"
    if "sastc" in v.method:
        cfg["distill"]["options"] = {"sastc": dict(v.sastc)}  # the trainer sets batch_size
    return cfg


def ensure_teacher(runs: Path, data_dir: str, smoke: bool) -> tuple[str, dict[str, Any]]:
    """The ``resnet8`` teacher's checkpoint and its row, trained first if missing (smoke:
    1 epoch on 5000 images)."""
    teacher_dir = runs / "teacher"
    if not (teacher_dir / "metrics.json").exists():
        cfg = teacher_config("resnet8")
        if smoke:
            cfg["data"]["train_subset"], cfg["train"]["epochs"] = 5000, 1
        Trainer(config_from_dict(cfg), teacher_dir, data_dir=data_dir).fit()
    metrics = json.loads((teacher_dir / "metrics.json").read_text())
    stored = yaml.safe_load((teacher_dir / "config.yaml").read_text())
    images = stored["data"].get("train_subset") or 60000
    return str(teacher_dir / "best.pt"), {"best_top1": metrics["best_top1"], "images": images}


def train_one(
    p: Protocol, v: Variant, seed: int, ctx: dict[str, Any], runs: Path
) -> dict[str, Any]:
    """Train one student; its results row (top-1, seconds, STM, per-epoch train terms)."""
    cfg = config_from_dict(config_of(p, v, seed, ctx["checkpoint"]))
    start = time.perf_counter()
    trainer = Trainer(cfg, runs / "sastc-study" / p.key / cfg.name, data_dir=ctx["data_dir"])
    summary = trainer.fit()
    seconds = time.perf_counter() - start
    history = trainer.state.history
    train = {
        k[len("train_") :]: [r[k] for r in history] for k in history[0] if k.startswith("train_")
    }
    sastc_module = dict(getattr(trainer.objective, "methods", {})).get("sastc")
    probe = ctx["probe"](p.batch)
    stm = stm_probe(trainer.model, ctx["teacher"], probe)
    attention = stm_probe(trainer.model, ctx["teacher"], probe, sastc=sastc_module)
    return {
        "protocol": p.key,
        "variant": v.name,
        "method": v.method,
        "sastc": v.sastc,
        "seed": seed,
        **settings(p),
        "last_top1": summary["last_top1"],
        "best_top1": summary["best_top1"],
        "seconds": seconds,
        "stm": stm,
        "stm_pairing": "layerwise",
        **({"stm_attention": attention} if sastc_module is not None else {}),
        "train": train,
    }


def protocols_of(args: argparse.Namespace) -> list[Protocol]:
    """The selected protocols, with the smoke/override epochs and subset applied."""
    chosen = []
    for grid in args.grid:
        for key in GRIDS[grid]:
            p = PROTOCOLS[key]
            epochs = max(1, round(p.epochs * args.epochs_scale))
            chosen.append(replace(p, epochs=epochs, subset=args.subset or p.subset))
    return chosen


def selected(v: Variant, args: argparse.Namespace) -> bool:
    if args.variants:
        return v.name in args.variants
    if args.only:
        return any(s in v.name for s in args.only)
    return not args.smoke or v.name in SMOKE_VARIANTS


def run_grid(args: argparse.Namespace, results: dict[str, Any], path: Path) -> None:
    runs = Path(args.runs)
    checkpoint, results["teacher"] = ensure_teacher(runs, args.data_dir, args.smoke)
    teacher = load_teacher("resnet8", checkpoint, 10, 1, TEACHERS["resnet8"][0]).model
    _, test_set, info = build_datasets("mnist", args.data_dir)
    probes: dict[int, torch.Tensor] = {}

    def probe(batch: int) -> torch.Tensor:
        if batch not in probes:
            loader = make_loader(test_set, batch, train=False, info=info)
            probes[batch] = next(iter(loader))[0]
        return probes[batch]

    ctx = {"checkpoint": checkpoint, "teacher": teacher, "probe": probe, "data_dir": args.data_dir}
    for p in protocols_of(args):
        for v in [v for v in variants_of(p.key, args.extra_weights) if selected(v, args)]:
            for seed in args.seeds:
                key = f"{p.key}|{v.name}|seed={seed}"
                if key in results:
                    done = {k: results[key][k] for k in settings(p)}
                    if done != settings(p):
                        sys.exit(f"{key} in {path} was run with {done}: use another --out")
                    continue
                try:
                    results[key] = train_one(p, v, seed, ctx, runs)
                except NonFiniteLossError as err:  # a result too: this setting diverges
                    base = {"protocol": p.key, "variant": v.name, "method": v.method}
                    results[key] = {**base, "sastc": v.sastc, "seed": seed, **settings(p)}
                    results[key]["diverged"] = str(err).split(";")[0]
                path.write_text(json.dumps(results, indent=2) + "\n")
                row = results[key]
                done = row.get("diverged") or f"top-1 {row['last_top1']:.2f}%"
                print(f"{key}: {done}", flush=True)


def groups_of(results: dict[str, Any]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """protocol -> variant -> rows, in PROTOCOLS and GRID order (extra variants last)."""
    order: dict[str, int] = {}
    for i, (_, v) in enumerate(GRID):
        order.setdefault(v.name, i)
    rows = [r for k, r in results.items() if k != "teacher"]
    rows.sort(key=lambda r: (list(PROTOCOLS).index(r["protocol"]), order.get(r["variant"], 99)))
    groups: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        groups.setdefault(r["protocol"], {}).setdefault(r["variant"], []).append(r)
    return groups


def term(rs: list[dict[str, Any]], name: str, epoch: int) -> str:
    """The mean over seeds of train term ``name`` at ``epoch`` (index), or blank."""
    values = [r["train"][name][epoch] for r in rs if name in r["train"]]
    return f"{statistics.mean(values):.3g}" if values else ""


def table_row(variant: str, runs: list[dict[str, Any]], kd: dict[int, float]) -> str:
    """One variant's row; runs that diverged are counted, not averaged."""
    rs = [r for r in runs if "diverged" not in r]
    seeds = str(len(runs)) + (f" ({len(runs) - len(rs)} diverged)" if len(rs) < len(runs) else "")
    if not rs:
        return f"| {variant} | {seeds} |" + " |" * 8
    top1 = [r["last_top1"] for r in rs]
    delta = f"{statistics.mean(top1) - statistics.mean(kd.values()):+.2f}" if kd else ""
    paired = [r["last_top1"] > kd[r["seed"]] for r in rs if r["seed"] in kd]
    if paired and variant != "kd":
        delta += f" ({sum(paired)}/{len(paired)})"
    first, last = term(rs, "sastc", 0), term(rs, "sastc", -1)
    sastc_text = f"{first} → {last}" if first else ""
    seconds = f"{statistics.mean(r['seconds'] for r in rs):.0f}"
    attention = [r["stm_attention"] for r in rs if "stm_attention" in r]
    stm = [mean_std([r["stm"] for r in rs], 3), mean_std(attention, 3) if attention else ""]
    cells = [variant, seeds, mean_std(top1, 2), delta, *stm]
    cells += [sastc_text, term(rs, "ce", -1), term(rs, "kd", -1), seconds]
    return "| " + " | ".join(cells) + " |"


DEFAULT_RERUN = (
    "Re-run: `python benchmarks/sastc_study.py --data-dir ../shared/data --seeds 0 1 2` "
    "(one part: `--grid main`, `--grid small-batch`, `--grid hard`; a default weight W "
    "everywhere: `--extra-weights W`)."
)


def write_markdown(results: dict[str, Any], path: Path, rerun: str = DEFAULT_RERUN) -> None:
    lines = [
        "# SASTC options on MNIST (CPU)",
        "",
        f"Teacher: ANN `resnet8` on {results['teacher'].get('images', 60000)} images, best top-1 "
        f"{results['teacher']['best_top1']:.2f}%. Students: spiking `convnet3` (width 16, "
        "head_pool 7), `tdbn` neuron, SGD 0.05 momentum 0.9 wd 5e-4 cosine, class-balanced "
        "training subset, top-1 on the full 10k test set after the last epoch, mean ± std over "
        "seeds. Δ vs kd: difference of means with the protocol's `kd` row (in brackets: in how "
        "many seeds the run beat the `kd` run of the same seed). STM (the paper's "
        "definition, natural log; lower = better matched): first test batch, every row with "
        "layer-wise pairing; 'SASTC pairs': paired by the run's own attention. Loss terms: "
        "per-sample train means of the epoch, mean over seeds (`sastc` is the weighted term, "
        "warm-up factor included). s/run: wall time while other jobs shared the 2 cores.",
        "",
        rerun,
    ]
    header = "| variant | seeds | last top-1 (%) | Δ vs kd | STM | STM, SASTC pairs | sastc ep1 → "
    header += "last | ce last | kd last | s/run |"
    for protocol, variants in groups_of(results).items():
        s = next(iter(variants.values()))[0]
        lines += [
            "",
            f"## {protocol}: {PROTOCOLS[protocol].about}",
            "",
            f"T={s['T']}, {s['subset']} images, {s['epochs']} epochs, batch {s['batch']}.",
            "",
            header,
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        kd = {r["seed"]: r["last_top1"] for r in variants.get("kd", [])}
        lines += [table_row(v, rs, kd) for v, rs in variants.items()]
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


# the curves of the weight plot: (SASTC options besides the weight, marker, filled, label)
CURVES = [
    ({}, "o", False, ""),
    ({"warmup_epochs": 5}, "s", True, ", warm-up 5"),
    ({"warmup_epochs": 5, "teacher_taps": [-2, -1]}, "^", True, ", warm-up 5, teacher taps -2,-1"),
]


def weight_of(r: dict[str, Any], options: dict[str, Any]) -> float | None:
    """The SASTC weight of a ``kd+sastc`` row whose other options are exactly ``options``,
    else None."""
    own = dict(r["sastc"]) if r["method"] == "kd+sastc" else {"": None}
    weight = own.pop("weight", None)
    return weight if own == options else None


def weight_curve(variants: dict[str, list[dict[str, Any]]], options: dict[str, Any]) -> list[tuple]:
    """``(weight, [top-1 of each seed that finished], seeds that diverged)``, by weight."""
    points = []
    for rs in variants.values():
        weight = weight_of(rs[0], options)
        done = [r["last_top1"] for r in rs if "last_top1" in r]
        if weight is not None and done:
            points.append((weight, done, len(rs) - len(done)))
    return sorted(points)


def plot_weights(ax: Any, groups: dict[str, dict[str, list[dict[str, Any]]]]) -> None:
    """Top-1 vs SASTC weight, a colour per protocol and a marker per ``CURVES`` entry (shifted
    a little right, one from the other, so that they do not hide each other); kd dashed, none
    dotted, in the protocol's colour."""
    floor = min(statistics.mean(r["last_top1"] for r in v["none"]) for v in groups.values()) - 1
    for i, (protocol, variants) in enumerate(groups.items()):
        colour = f"C{i}"
        ax.plot([], [], color=colour, label=protocol)
        for k, (options, marker, filled, _) in enumerate(CURVES):
            points = weight_curve(variants, options)
            if not points:
                continue
            fill = colour if filled else "white"
            means = [max(statistics.mean(t), floor) for _, t, _ in points]
            stds = [statistics.stdev(t) if len(t) > 1 else 0.0 for _, t, _ in points]
            style = {"color": colour, "marker": marker, "markerfacecolor": fill, "capsize": 3}
            ax.errorbar([w * 1.08**k for w, _, _ in points], means, yerr=stds, **style)
            for (w, t, diverged), mean in zip(points, means, strict=True):
                if diverged or mean > statistics.mean(t):
                    note = f"{statistics.mean(t):.1f}%" + (
                        f", {diverged} diverged" if diverged else ""
                    )
                    ax.annotate(note, (w, mean), textcoords="offset points", xytext=(-60, 8),
                                fontsize=7, color=colour)  # fmt: skip
        for base, style in (("kd", "--"), ("none", ":")):
            if base in variants:
                mean = statistics.mean(r["last_top1"] for r in variants[base])
                ax.axhline(mean, color=colour, linestyle=style, linewidth=1, label=f"{base}")
    ax.set_ylim(bottom=floor - 0.2)
    ax.set_xscale("log")
    ax.set_xlabel("SASTC weight")
    ax.set_ylabel("last top-1 (%)")
    ax.set_title("top-1 vs SASTC weight (kd --, none ··)")
    handles, labels = ax.get_legend_handles_labels()
    for _, marker, filled, name in CURVES:  # the markers, in black
        style = {"marker": marker, "markerfacecolor": "black" if filled else "white"}
        handles.append(ax.plot([], [], color="black", linestyle="", **style)[0])
        labels.append(f"kd+sastc{name}")
    keep = [(h, lab) for h, lab in zip(handles, labels, strict=True) if lab not in ("kd", "none")]
    ax.legend(*zip(*keep, strict=True), fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)


def plot_terms(ax: Any, results: dict[str, Any]) -> None:
    """Per-epoch ce / kd / sastc terms of seed 0 of kd+sastc at a few weights on main."""
    styles = {"ce": "-", "kd": "--", "sastc": ":"}
    for i, weight in enumerate(TERMS_PLOT):
        row = results.get(f"main|{sastc(weight).name}|seed=0")
        if row is None:
            continue
        for name, style in styles.items():
            values = row.get("train", {}).get(name)
            if values:
                epochs = range(1, len(values) + 1)
                label = f"w={weight:g} {name}"
                ax.plot(epochs, values, style, color=f"C{i}", marker=".", label=label)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss term (per sample)")
    ax.set_title("main, seed 0: ce —, kd --, sastc ··")
    if ax.lines:
        ax.legend(fontsize=7, ncol=len(TERMS_PLOT), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    ax.grid(alpha=0.3)


def write_plot(results: dict[str, Any], path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    plot_weights(left, groups_of(results))
    plot_terms(right, results)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", nargs="+", choices=list(GRIDS), default=list(GRIDS))
    parser.add_argument("--only", nargs="+", help="keep variants whose name contains any")
    parser.add_argument("--variants", nargs="+", help="keep variants with exactly these names")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--extra-weights", type=float, nargs="+", default=[])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--out", default="benchmarks/results/sastc_study")
    parser.add_argument("--runs", default="runs/bench-mnist", help="teacher/ and sastc-study/")
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="smoke tests only")
    parser.add_argument("--subset", type=int, help="training images (smoke tests only)")
    smoke = "100 images, 1 epoch, first seed, none/kd/kd+sastc w=100 (or --only), into /tmp"
    parser.add_argument("--smoke", action="store_true", help=smoke)
    args = parser.parse_args()
    if args.smoke:
        args.subset, args.epochs_scale, args.seeds = args.subset or 100, 0.0, args.seeds[:1]
        defaults = {"out": "benchmarks/results/sastc_study", "runs": "runs/bench-mnist"}
        for name, default in defaults.items():
            if getattr(args, name) == default:
                setattr(args, name, f"/tmp/sastc_smoke/{Path(default).name}")
    return args


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.with_suffix(".json")
    results = json.loads(path.read_text()) if path.exists() else {}
    run_grid(args, results, path)
    path.write_text(json.dumps(results, indent=2) + "\n")
    default_out = out == Path("benchmarks/results/sastc_study")
    rerun = DEFAULT_RERUN if default_out else f"Made by: `{shlex.join(['python', *sys.argv])}`."
    write_markdown(results, out.with_suffix(".md"), rerun)
    write_plot(results, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
