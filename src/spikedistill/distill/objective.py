"""``DistillObjective``: frozen teacher + student with feature taps -> named loss terms.

Per batch: the teacher runs under ``no_grad`` (logits and taps detached); the student runs
once with its taps (time-folded outputs unfolded to ``[T, B, ...]``); every method maps the
``DistillBatch`` to weighted terms; the trainer sums them and does one backward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..models.contract import (
    batch_size_of,
    check_logits,
    check_student,
    feature_layout_of,
    is_spiking,
    time_steps,
)
from ..spiking import unfold_time
from ..typed import check_options, parameter_types
from .base import DistillBatch, DistillMethod, method_class
from .taps import FeatureTaps
from .teacher import FrozenTeacher
from .teacher_cache import TeacherCache


def parse_methods(spec: str) -> list[str]:
    """``"kd+sastc"`` -> ``["kd", "sastc"]``; ``"none"`` -> ``[]``; each registered or your
    own ``package.module:Class`` (see ``method_class``)."""
    names = [n.strip() for n in spec.split("+")]
    if names == ["none"]:
        return []
    if "" in names:
        raise ConfigError(f"distill.method {spec!r} has an empty method name (e.g. kd+sastc)")
    keys = [method_class(name).name for name in names]  # raises with the valid names
    if len(set(keys)) != len(keys):
        raise ConfigError(f"distill.method {spec!r} names a method twice")
    return names


def build_method(
    name: str, student: nn.Module, teacher: nn.Module, options: dict[str, Any]
) -> DistillMethod:
    """Method ``name`` (registered, or ``package.module:Class``) with its checked options."""
    cls = method_class(name)
    types = parameter_types(cls, skip=("student", "teacher"))
    path, owner = f"distill.options.{cls.name}", f"method {cls.name!r}"
    return cls(student, teacher, **check_options(options, types, path, owner))


def student_forward(student: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per-step logits ``[T, B, K]`` of a student (``T = 1`` for an ANN; ``[1, B, K]``: a
    student that gives only its mean over time)."""
    batch = batch_size_of(x)
    if not is_spiking(student):
        logits = student(x)
        check_logits(student, logits, batch)
        return logits.unsqueeze(0)
    steps, T = student(x, per_step=True), time_steps(student)
    check_logits(student, steps, batch, per_step=True)
    if steps.shape[0] not in (1, T):
        raise ConfigError(
            f"{type(student).__name__}(x, per_step=True) gives shape {tuple(steps.shape)}; a "
            f"spiking student's per-step logits are [T={T}, B, K] (or [1, B, K])"
        )
    return steps


def time_first_features(
    features: dict[str, torch.Tensor],
    student: nn.Module,
    batch: int,
    runs: dict[str, int] | None = None,
) -> dict[str, torch.Tensor]:
    """Tapped student outputs as ``[T, B, ...]`` (``T = 1`` for an ANN), read by the student's
    declared ``feature_layout`` (``models.contract``): ``"folded"`` maps ``[T*B, ...]`` are
    unfolded (a map computed once per sample, ``[B, ...]`` such as a direct-encoding stem's,
    becomes ``[1, B, ...]``); ``"time_first"`` maps ``[T, B, ...]`` are kept, as are the
    stacked outputs of a module that ran once per step (``runs``: ``FeatureTaps.runs``)."""
    steps, runs = time_steps(student), runs or {}
    if is_spiking(student) and feature_layout_of(student) == "time_first":
        return {path: _checked_time_first(path, v, steps, batch) for path, v in features.items()}
    return {
        path: _checked_time_first(path, v, steps, batch, runs[path])
        if runs.get(path, 1) > 1
        else _unfolded(path, v, steps, batch)
        for path, v in features.items()
    }


def _unfolded(path: str, v: torch.Tensor, steps: int, batch: int) -> torch.Tensor:
    if v.shape[0] == steps * batch:
        return unfold_time(v, steps) if steps > 1 else v.unsqueeze(0)
    if v.shape[0] == batch:
        return v.unsqueeze(0)
    raise ConfigError(
        f"the student's tap {path!r} gives {v.shape[0]} rows for a batch of {batch} "
        f"at T={steps}; tap a layer inside the network (or declare feature_layout="
        "'time_first' if its maps are [T, B, ...])"
    )


def _checked_time_first(
    path: str, v: torch.Tensor, steps: int, batch: int, runs: int = 1
) -> torch.Tensor:
    if v.dim() < 2 or v.shape[:2] != (steps, batch):
        how = (
            f"ran {runs} times in one forward, giving {tuple(v.shape)} stacked; a module "
            f"that runs once per time step must run T={steps} times on [B={batch}, ...]"
            if runs > 1
            else f"gives shape {tuple(v.shape)}; with feature_layout='time_first' it must be "
            f"[T={steps}, B={batch}, ...]"
        )
        raise ConfigError(f"the student's tap {path!r} {how}")
    return v


class DistillObjective(nn.Module):
    """``forward(student, x, y) -> (student logits [B, K], {term: weighted loss})``."""

    def __init__(
        self,
        student: nn.Module,
        teacher: FrozenTeacher,
        methods: list[DistillMethod],
        ce_weight: float = 1.0,
        cache_size: int | None = None,
    ) -> None:
        """``cache_size``: cache the teacher's outputs for that many dataset indices (see
        ``TeacherCache``; only for inputs that are the same every epoch)."""
        super().__init__()
        check_student(student)
        for method in methods:
            _check_holds_no_model(method, student, teacher.model)
        self.teacher = teacher
        self.methods = nn.ModuleDict({m.name: m for m in methods})
        self.ce_weight = ce_weight
        student_paths = [p for m in methods for p in _tap_paths(m, "student", student)]
        teacher_paths = [p for m in methods for p in _tap_paths(m, "teacher", teacher.model)]
        self._student_taps = (
            FeatureTaps(student, student_paths, repeats="stack") if student_paths else None
        )
        self._teacher_taps = FeatureTaps(teacher.model, teacher_paths) if teacher_paths else None
        self.cache = TeacherCache(cache_size) if cache_size else None

    def run_teacher(
        self, x: torch.Tensor, index: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Teacher logits and tapped features; with a cache, the teacher runs only on the
        samples not stored yet."""
        if self.cache is None or index is None:
            logits = self.teacher(x).detach()
            return logits, self._teacher_taps.pop() if self._teacher_taps else {}
        missing = self.cache.missing(index)
        if missing.any():
            new = missing.to(x.device)
            logits = self.teacher(x[new] if not missing.all() else x).detach()
            feats = self._teacher_taps.pop() if self._teacher_taps else {}
            self.cache.put(index[missing], {"__logits__": logits, **feats})
        cached = self.cache.get(index)
        return cached.pop("__logits__"), cached

    def distill_batch(
        self,
        student: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        index: torch.Tensor | None = None,
    ) -> DistillBatch:
        teacher_logits, teacher_feats = self.run_teacher(x, index)
        steps = student_forward(student, x)
        taps, student_feats = self._student_taps, {}
        if taps:
            student_feats = taps.pop()  # sets taps.runs
            student_feats = time_first_features(student_feats, student, len(y), taps.runs)
        return DistillBatch(
            y=y,
            student_logits=steps.mean(0),
            step_logits=steps,
            teacher_logits=teacher_logits,
            student_features=student_feats,
            teacher_features={k: v.detach() for k, v in teacher_feats.items()},
            teacher=self.teacher.model,
        )

    def set_epoch(self, epoch: int) -> None:
        for method in self.methods.values():
            method.set_epoch(epoch)

    @torch.no_grad()
    def build(self, student: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        """Create the methods' modules from one batch of real shapes (eval mode, no grad)."""
        was_training = student.training
        student.eval()
        batch = self.distill_batch(student, x, y)
        for method in self.methods.values():
            method.build(batch)
        student.train(was_training)

    def forward(
        self,
        student: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch = self.distill_batch(student, x, y, index)
        terms: dict[str, torch.Tensor] = {}
        if self.ce_weight:
            terms["ce"] = self.ce_weight * nn.functional.cross_entropy(batch.student_logits, y)
        for method in self.methods.values():
            add_terms(terms, method(batch), method.name)
        return batch.student_logits, terms


def _check_holds_no_model(method: DistillMethod, student: nn.Module, teacher: nn.Module) -> None:
    """A method that keeps the student or the teacher as a submodule would save and optimise
    them as its own parameters."""
    for path, module in method.named_modules():
        if module is student or module is teacher:
            side = "student" if module is student else "teacher"
            raise ConfigError(
                f"method {method.name!r} holds the {side} as its module {path!r}: it would be "
                "saved and optimised as the method's own; keep what you need of it (a layer's "
                "shape, a plain reference outside the module tree) instead"
            )


def _tap_paths(method: DistillMethod, side: str, model: nn.Module) -> list[str]:
    """``method``'s ``student_taps()`` / ``teacher_taps()``: module paths of ``model``."""
    paths = getattr(method, f"{side}_taps")()
    modules = dict(model.named_modules())
    for path in paths:
        if not isinstance(path, str) or path not in modules:
            raise ConfigError(
                f"method {method.name!r}: its {side}_taps() gives {path!r}, not a module path "
                f"of the {side} ({type(model).__name__}); resolve stage indices and paths in "
                "its __init__ with spikedistill.distill.resolve_taps(model, specs)"
            )
    return paths


#: what the trainer logs beside the terms (``train_loss``, ``train_top1``, ...): no term's name
TRAINER_NAMES = frozenset({"loss", "top1", "correct", "samples", "seconds"})


def add_terms(terms: dict[str, torch.Tensor], new: Any, method: str) -> None:
    """``new``, a method's loss terms, added to ``terms``: each a scalar tensor under a name
    of its own (``ConfigError`` naming the method otherwise)."""
    if not isinstance(new, dict):
        raise ConfigError(
            f"method {method!r} returned a {type(new).__name__}, not a dict of loss terms "
            f"({{{method!r}: loss}})"
        )
    for key, value in new.items():
        where = f"method {method!r}: its term {key!r}"
        if not isinstance(value, torch.Tensor):
            raise ConfigError(f"{where} is a {type(value).__name__}, not a scalar tensor")
        if value.dim() != 0:
            raise ConfigError(f"{where} has shape {list(value.shape)}; reduce it to a scalar")
        if key in terms or key in TRAINER_NAMES:
            owner = (
                "the trainer's (its metrics)" if key in TRAINER_NAMES
                else "the cross-entropy's" if key == "ce"
                else "another method's"
            )  # fmt: skip
            raise ConfigError(f"{where} is also {owner}; name it otherwise ({method}_{key})")
        terms[key] = value
