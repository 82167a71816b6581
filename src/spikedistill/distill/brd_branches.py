"""BRD branch points: the block boundaries of a zoo model and the teacher's rest after one.

A block boundary is a stage (``"layer2"``) or, inside a stage that is an ``nn.Sequential``,
a child that is or holds an activation: a residual block (``"layer2.0"``) or, in a VGG-like
stage of plain layers, the activation that ends a conv block (``"layer2.2"``). The teacher's
rest after a boundary is the stage's later children, then the later stages (the head is
run by the caller).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from ..errors import ConfigError
from ..models import ZooModel
from ..spiking import FoldedNeuron

ACTIVATIONS = (FoldedNeuron, nn.ReLU)


@dataclass(frozen=True)
class Branch:
    """A boundary ``path``: after child ``child`` of stage ``stage`` (``None``: the stage)."""

    path: str
    stage: int
    child: int | None = None


def block_boundaries(model: ZooModel) -> list[Branch]:
    """Every block boundary of ``model``, in network order."""
    out = []
    for s, (name, stage) in enumerate(model.stages()):
        if isinstance(stage, nn.Sequential):
            for i, (key, child) in enumerate(stage.named_children()):
                if any(isinstance(m, ACTIVATIONS) for m in child.modules()):
                    out.append(Branch(f"{name}.{key}", s, i))
        out.append(Branch(name, s))
    return out


def resolve_branches(
    student: ZooModel, teacher: ZooModel, paths: Sequence[str] | None
) -> list[Branch]:
    """The branches ``paths`` names, in network order; ``None``: every stage but the last.
    A path must be a block boundary at the same place in both models."""
    if paths is None:
        return [Branch(name, s) for s, name in enumerate(student.stage_names[:-1])]
    theirs = set(block_boundaries(teacher))
    valid = [b for b in block_boundaries(student) if b in theirs]
    by_path = {b.path: b for b in valid}
    bad = [p for p in paths if p not in by_path]
    if bad or not paths:
        raise ConfigError(
            f"brd branches {list(paths)}: "
            + (f"{bad} are not block boundaries" if bad else "name at least one block boundary")
            + " of both the student and the teacher; valid: "
            + ", ".join(b.path for b in valid)
        )
    places = [_place(by_path[p], student) for p in paths]
    if len(set(places)) != len(places):
        raise ConfigError(
            f"brd branches {list(paths)} name one boundary twice (a stage's last block ends "
            "where the stage does)"
        )
    return [b for b in valid if b.path in set(paths)]


def _place(branch: Branch, model: ZooModel) -> tuple[int, int]:
    """Where ``branch`` cuts the network: (stage, children of it before the cut)."""
    stage = model.stages()[branch.stage][1]
    done = len(list(stage.children())) if branch.child is None else branch.child + 1
    return branch.stage, done


def teacher_rest(teacher: ZooModel, branch: Branch) -> list[nn.Module]:
    """The teacher's modules after ``branch``, up to the head: the rest of its stage
    (``stage[child + 1:]``, one module of the stage's class), then the later stages."""
    stages = [module for _, module in teacher.stages()]
    rest = stages[branch.stage + 1 :]
    if branch.child is not None:
        tail = stages[branch.stage][branch.child + 1 :]
        rest = ([tail] if len(tail) else []) + rest
    return rest
