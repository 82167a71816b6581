"""Training-step time of each distillation method relative to ``none`` (CE only), side by side.

Every variant is a full step (teacher, student with taps, losses, backward, SGD) on its own
copy of the same student, interleaved, medians of ``--reps``. "cold": the teacher runs every
step; "warm": its outputs come from the teacher cache (``teacher.cache: true``, valid for
unaugmented data such as the MNIST protocol).

    python benchmarks/method_overhead.py --preset mnist
    python benchmarks/method_overhead.py --preset cifar --reps 5
    python benchmarks/method_overhead.py --preset cifar --teacher cold \
        --methods kd kd+sastc "kd+sastc[regressor=conv1x1]"
"""

from __future__ import annotations

import argparse
import copy
import platform
import re
import shlex
import sys

import torch
import yaml

from spikedistill.bench import emit_table, interleaved_medians
from spikedistill.distill import FrozenTeacher
from spikedistill.distill.objective import DistillObjective, build_method, parse_methods
from spikedistill.engine.objective import CrossEntropyObjective
from spikedistill.models import build_model

PRESETS = {
    "mnist": dict(
        student=("convnet3", {"in_channels": 1, "width": 16, "head_pool": 7}),
        teacher=("resnet8", {"in_channels": 1}),
        shape=(1, 28, 28),
        batch=64,
        T=2,
    ),
    "cifar": dict(
        student=("resnet19", {}),
        teacher=("resnet19", {"head_hidden": None}),
        shape=(3, 32, 32),
        batch=16,
        T=2,
    ),
}
METHODS = ["kd", "fitnet", "kd+sastc", "samd", "nld", "samd+nld"]
# a method spec with ``[option=value,...]`` for SASTC, e.g. ``kd+sastc[regressor=conv1x1]``
SASTC_OPTION = re.compile(r"^(?P<spec>[^\[]+)\[(?P<options>.*)\]$")


def parse_variant(variant: str, batch: int) -> tuple[str, dict]:
    """``"kd+sastc[regressor=conv1x1]"`` -> ``("kd+sastc", {"batch_size": B, "regressor": ...})``:
    the method spec and SASTC's options."""
    match = SASTC_OPTION.match(variant)
    spec, extra = (match["spec"], match["options"]) if match else (variant, "")
    given = yaml.safe_load("{" + extra.replace("=", ": ") + "}")  # "a=1,b=[2,3]": YAML flow
    return spec, {"batch_size": batch, **given}


def step_fn(student, objective, x, y, index):
    params = [p for m in (student, objective) for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9)

    def step() -> None:
        _, terms = objective(student, x, y, index)
        optimizer.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=list(PRESETS), default="mnist")
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--teacher", nargs="+", choices=["cold", "warm"], default=["cold", "warm"])
    parser.add_argument("--out", help="append the Markdown table to this file")
    args = parser.parse_args()
    p = PRESETS[args.preset]
    torch.manual_seed(0)
    (s_name, s_opts), (t_name, t_opts) = p["student"], p["teacher"]
    base = build_model(s_name, 10, spiking=True, T=p["T"], **s_opts).train()
    teacher = FrozenTeacher(build_model(t_name, 10, **t_opts))
    x = torch.randn(p["batch"], *p["shape"])
    y = torch.randint(0, 10, (p["batch"],))
    index = torch.arange(p["batch"])
    steps = {"none": step_fn(copy.deepcopy(base), CrossEntropyObjective(), x, y, index)}
    for variant in args.methods:
        spec, sastc_options = parse_variant(variant, p["batch"])
        for cache in args.teacher:
            student = copy.deepcopy(base)
            methods = [
                build_method(n, student, teacher.model, sastc_options if n == "sastc" else {})
                for n in parse_methods(spec)
            ]
            objective = DistillObjective(
                student, teacher, methods, cache_size=p["batch"] if cache == "warm" else None
            )
            objective.build(student, x, y)
            objective.distill_batch(student, x, y, index)  # fills a warm cache
            steps[f"{variant} ({cache})"] = step_fn(student, objective, x, y, index)
    medians = interleaved_medians(steps, reps=args.reps, warmup=2)
    none = medians["none"]
    lines = [
        f"### {args.preset}: student {s_name} SNN T={p['T']}, teacher {t_name}, batch "
        f"{p['batch']}, input {p['shape']}",
        f"`python benchmarks/method_overhead.py {shlex.join(sys.argv[1:])}`; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}",
        "",
        "| method | median step (ms) | / none |",
        "|---|---|---|",
    ]
    for name, seconds in medians.items():
        lines.append(f"| {name} | {1000 * seconds:.1f} | {seconds / none:.3f} |")
    emit_table(lines, args.out)


if __name__ == "__main__":
    main()
