"""Does evaluating SASTC's regressors differently make them cheaper? (CPU, side by side)

SASTC applies each regressor ``R_ij`` (Conv3x3 -> BN -> ReLU -> Conv1x1) to every time step's
``[B, C, h, w]`` slice, one call per step and pair. Three exact rewrites, each giving the same
loss within float rounding (BatchNorm still normalises per time step), are timed here against
the library's per-step loop, for SASTC's forward + backward on resnet19 <- resnet19 features:

- ``fold``: each regressor once on the time-folded ``[T*B, ...]`` input, BatchNorm per step;
- ``fold+concat``: also one convolution for all regressors that share an input (their first
  convolutions' weights concatenated along the output channels);
- ``fold+concat+cl``: the same in channels-last memory format.

    python benchmarks/sastc_layouts.py --reps 7
"""

from __future__ import annotations

import argparse
import copy
import platform
import shlex
import sys
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spikedistill.bench import emit_table, interleaved_medians
from spikedistill.distill import FrozenTeacher
from spikedistill.distill.objective import DistillObjective
from spikedistill.distill.sastc import SASTC
from spikedistill.models import build_model

Regress = Callable[[Sequence[nn.Sequential], torch.Tensor, int], list[torch.Tensor]]


def per_step_batch_norm(z: torch.Tensor, steps: int, norms: Sequence[nn.BatchNorm2d]):
    """BatchNorm of each step's slice of ``z [T*B, M, h, w]`` (``M``: the norms' channels)."""
    weight = torch.cat([n.weight for n in norms])
    bias = torch.cat([n.bias for n in norms])
    mean = torch.cat([n.running_mean for n in norms])
    var = torch.cat([n.running_var for n in norms])
    first = norms[0]
    parts = [
        F.batch_norm(part, mean, var, weight, bias, True, first.momentum, first.eps)
        for part in z.chunk(steps)
    ]
    return torch.cat(parts)


def regress_grouped(regs: Sequence[nn.Sequential], x: torch.Tensor, steps: int):
    """Every regressor of ``regs`` on each step of the folded ``x``, one first convolution."""
    convs = [r[0] for r in regs]
    z = F.conv2d(x, torch.cat([c.weight for c in convs]), padding=convs[0].padding)
    z = F.relu(per_step_batch_norm(z, steps, [r[1] for r in regs]))
    parts = z.split([c.out_channels for c in convs], dim=1)
    return [F.conv2d(p, r[3].weight) for r, p in zip(regs, parts, strict=True)]


def regress_separately(regs: Sequence[nn.Sequential], x: torch.Tensor, steps: int):
    return [regress_grouped([r], x, steps)[0] for r in regs]


def regress_channels_last(regs: Sequence[nn.Sequential], x: torch.Tensor, steps: int):
    return regress_grouped(regs, x.contiguous(memory_format=torch.channels_last), steps)


class FoldedSASTC(SASTC):
    """SASTC whose distances come from ``regress`` over the pairs of one input size."""

    def __init__(self, *args, regress: Regress, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.regress = regress

    def _distances(self, s: list[torch.Tensor], a: list[torch.Tensor]) -> torch.Tensor:
        steps, n = s[0].shape[:2]
        rows = []
        for i, si in enumerate(s):
            by_size: dict[tuple[int, ...], list[int]] = {}
            for j, aj in enumerate(a):
                larger = si.shape[-2] > aj.shape[-2]
                by_size.setdefault(tuple((aj if larger else si).shape[-2:]), []).append(j)
            row: list[torch.Tensor] = [si] * len(a)
            for size, js in by_size.items():
                x = si.flatten(0, 1)
                if size != tuple(si.shape[-2:]):
                    x = F.adaptive_max_pool2d(x, size)
                outs = self.regress([self.regressors[i][j] for j in js], x, steps)
                for j, out in zip(js, outs, strict=True):
                    target = F.adaptive_avg_pool2d(a[j], size)
                    diff = out.view(steps, n, *out.shape[1:]) - target
                    row[j] = diff.pow(2).mean(dim=(2, 3, 4))
            rows.append(torch.stack(row, dim=-1))
        return torch.stack(rows, dim=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--out", help="append the Markdown table to this file")
    args = parser.parse_args()
    torch.manual_seed(0)
    steps, batch_size = 2, 16
    student = build_model("resnet19", 10, spiking=True, T=steps).train()
    teacher = FrozenTeacher(build_model("resnet19", 10, head_hidden=None))
    x, y = torch.randn(batch_size, 3, 32, 32), torch.randint(0, 10, (batch_size,))
    library = SASTC(student, teacher.model, batch_size=batch_size)
    objective = DistillObjective(student, teacher, [library])
    objective.build(student, x, y)
    batch = objective.distill_batch(student, x, y)
    batch.student_features = {
        k: v.detach().requires_grad_() for k, v in batch.student_features.items()
    }
    variants = {"per-step loop (library)": library}
    for name, regress in [
        ("fold", regress_separately),
        ("fold+concat", regress_grouped),
        ("fold+concat+cl", regress_channels_last),
    ]:
        method = FoldedSASTC(student, teacher.model, batch_size=batch_size, regress=regress)
        with torch.no_grad():
            method.build(batch)
        method.load_state_dict(copy.deepcopy(library.state_dict()))
        if name.endswith("cl"):
            method.to(memory_format=torch.channels_last)
        variants[name] = method
    with torch.no_grad():
        reference = library(batch)["sastc"]
        for name, method in variants.items():
            torch.testing.assert_close(method(batch)["sastc"], reference, msg=name)

    def step(method: SASTC) -> Callable[[], None]:
        return lambda: method(batch)["sastc"].backward()

    medians = interleaved_medians({k: step(m) for k, m in variants.items()}, reps=args.reps)
    base = medians["per-step loop (library)"]
    lines = [
        "### SASTC regressors: exact rewrites, forward + backward (resnet19 <- resnet19, "
        f"T={steps}, B={batch_size})",
        f"`python benchmarks/sastc_layouts.py {shlex.join(sys.argv[1:])}`; torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}",
        "",
        "| evaluation | median (ms) | / per-step loop |",
        "|---|---|---|",
        *[f"| {k} | {1000 * v:.0f} | {v / base:.3f} |" for k, v in medians.items()],
    ]
    emit_table(lines, args.out)


if __name__ == "__main__":
    main()
