"""Training modules you built, from Python: ``train(student, train_loader, test_loader, ...)``.

The trainer of ``spikedistill train`` (distillation methods, Rate-BP, checkpoints, metrics,
exact resume) on your own student, teacher and ``torch.utils.data.DataLoader``s. The run
directory's ``config.yaml`` records them as ``model.name: package.module:Class`` and
``data.name: python``; ``load_model`` rebuilds such a student by calling that class with the
arguments it takes of ``num_classes``, ``in_channels``, ``T``; a student it cannot rebuild so
(other constructor arguments, a wrapper such as ``SpikingStudent``, a class of ``__main__``)
is built by you and handed to ``load_model(run, model=student)``.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.info import DatasetInfo
from ..errors import ConfigError
from ..models.contract import time_steps
from ..user_code import find_callable
from ..warning_site import warnings_at_caller
from .config import ExperimentConfig, config_from_dict
from .distributed import DistContext
from .objective import build_objective
from .run_dir import PYTHON_NAMES, claim_run_dir
from .schema import set_dotted
from .setup import probe_forward
from .trainer import Trainer

#: sections that the given modules and loaders decide, not ``settings``
GIVEN = ("model.", "data.name", "data.options", "teacher.name", "teacher.checkpoint")


class UserLoader:
    """A ``DataLoader`` (any sized iterable of ``(x, y, ...)`` batches) as the trainer's loader.
    ``set_epoch`` reaches its sampler (a ``DistributedSampler`` under torchrun); a resumed
    epoch skips the batches already trained, which are the same batches only when the
    loader's order is seeded."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.batch_size = getattr(loader, "batch_size", None)

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)

    def iter_from(self, start_batch: int, with_indices: bool = False) -> Iterator[tuple]:
        """``(x, y)`` (``with_indices``: ``(x, y, positions in the epoch)``) from batch
        ``start_batch`` on."""
        seen = 0
        for batch in itertools.islice(self.loader, start_batch, None):
            x, y = batch[0], batch[1]
            if with_indices:
                yield x, y, torch.arange(seen, seen + len(y))
            else:
                yield x, y
            seen += len(y)

    def __iter__(self) -> Iterator[tuple]:
        return self.iter_from(0)


def sample_count(loader: Any) -> int:
    """Samples per epoch: the dataset's length, else batches x batch size."""
    try:
        return len(loader.dataset)
    except (AttributeError, TypeError):
        return len(loader) * (getattr(loader, "batch_size", None) or 1)


def infer_data_info(student: nn.Module, x: torch.Tensor) -> DatasetInfo:
    """What the trainer needs to know of the data, read off a batch ``x`` (images
    ``[B, C, H, W]`` or event frames ``[T, B, C, H, W]``, normalised by the loader) and the
    student's output on two of its samples (the class count)."""
    logits = probe_forward(student, x.to(next(student.parameters()).device))
    channels = x.shape[-3]
    steps = x.shape[0] if x.dim() == 5 else None
    size = (x.shape[-2], x.shape[-1])
    return DatasetInfo(
        logits.shape[-1], channels, size, (0.0,) * channels, (1.0,) * channels, steps
    )


class ModuleTrainer(Trainer):
    """``Trainer`` on a given student, teacher and loaders instead of those ``cfg`` names."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        run_dir: str | os.PathLike,
        student: nn.Module,
        train_loader: Any,
        test_loader: Any,
        teacher: nn.Module | None = None,
    ) -> None:
        self.given = student, teacher, UserLoader(train_loader), UserLoader(test_loader)
        super().__init__(cfg, run_dir)

    def _build_data(self, root: str | None) -> None:
        student, _, self.train_loader, self.test_loader = self.given
        x, _ = next(iter(self.train_loader))
        self.info = infer_data_info(student, x)
        self.train_set = range(sample_count(self.train_loader.loader))
        self.test_set = range(sample_count(self.test_loader.loader))

    def make_student(self) -> nn.Module:
        return self.given[0]

    def _build_objective(self, objective: nn.Module | None) -> None:
        teacher = self.given[1]
        if objective is None and teacher is not None:
            info = self.info
            objective = build_objective(
                self.cfg, self.model, info.num_classes, info.in_channels,
                world_size=self.dist.world_size, teacher=teacher.to(self.device),
            )  # fmt: skip
        super()._build_objective(objective)


def batch_sizes(train_loader: Any, test_loader: Any) -> dict[str, int]:
    """``data.batch_size`` (which sizes SASTC's similarity matrices) and ``eval_batch_size``
    as the loaders batch."""
    sizes = {}
    for key, loader in (("batch_size", train_loader), ("eval_batch_size", test_loader)):
        if isinstance(getattr(loader, "batch_size", None), int):
            sizes[key] = loader.batch_size
    return sizes


def model_section(student: nn.Module) -> dict[str, Any]:
    """``model:`` of a config that rebuilds ``student``: a zoo model's name and options, else
    its class as ``package.module:Class``."""
    section = {"spiking": bool(getattr(student, "spiking", False))}
    if section["spiking"]:
        section["T"] = time_steps(student)  # an SNN without T: one line saying so
    spec = dict(getattr(student, "zoo_spec", {}))
    spec.pop("in_channels", None)
    spec.pop("T", None)
    if spec and isinstance(spec.get("neuron", ""), str):
        name = spec.pop("name")
        neuron = {k: spec.pop(k) for k in ("neuron", "neuron_kwargs") if k in spec}
        return {"name": name, **section, **neuron, "options": spec}
    klass = type(student)
    name = f"{klass.__module__}:{klass.__qualname__}"
    if not _rebuildable(klass, name):
        warnings.warn(
            f"{klass.__qualname__} cannot be rebuilt from the run's config alone (a class of "
            "a script or a function, or one that takes other arguments than num_classes, "
            "in_channels, T): load the trained run with "
            "spikedistill.load_model(run, model=a_new_instance)",
            UserWarning,
            stacklevel=2,
        )
    return {"name": name, **section}


def _rebuildable(klass: type, name: str) -> bool:
    """Whether another process finds ``klass`` by ``name`` and can call it with what a
    config gives."""
    if klass.__module__ == "__main__":
        return False
    try:
        found = find_callable(name)
    except ConfigError:
        return False
    return found is klass and not _needs_more(klass)


def _needs_more(klass: type) -> bool:
    """Whether ``klass(...)`` needs an argument that a config cannot give it."""
    given = {"self", "num_classes", "in_channels", "T", "neuron", "neuron_kwargs", "spiking"}
    parameters = inspect.signature(klass.__init__).parameters.values()
    return any(
        p.default is p.empty
        and p.name not in given
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        for p in parameters
    )


def module_config(
    student: nn.Module,
    loaders: tuple[Any, Any],
    method: str,
    options: dict[str, dict[str, Any]] | None,
    settings: dict[str, Any] | None,
) -> ExperimentConfig:
    """The config of a ``train`` call: ``settings`` are dotted keys (``"optim.lr": 0.05``)."""
    data: dict[str, Any] = {
        "name": "python-run",
        "model": model_section(student),
        "data": {"name": "python", **batch_sizes(*loaders)},
        "distill": {"method": method, "options": options or {}},
    }
    for key, value in (settings or {}).items():
        if key.startswith(GIVEN):
            raise ConfigError(f"settings[{key!r}]: the modules and loaders you pass decide it")
        set_dotted(data, key, value, f"settings[{key!r}]")
    cfg = config_from_dict(data)
    if cfg.train.stm_every or cfg.teacher.cache:
        raise ConfigError(
            "train.stm_every and teacher.cache need a spikedistill dataset; with your own "
            "loaders run `spikedistill eval --stm` on the run afterwards instead"
        )
    return cfg


@contextlib.contextmanager
def lent(module: nn.Module | None) -> Iterator[None]:
    """Restore ``module``'s modes and ``requires_grad`` flags afterwards (training freezes a
    teacher)."""
    modules = list(module.modules()) if module is not None else []
    modes = [m.training for m in modules]
    params = list(module.parameters()) if module is not None else []
    flags = [p.requires_grad for p in params]
    try:
        yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.training = mode
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


@warnings_at_caller
def train(
    student: nn.Module,
    train_loader: Any,
    test_loader: Any,
    *,
    out: str | os.PathLike,
    teacher: nn.Module | None = None,
    method: str | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    settings: dict[str, Any] | None = None,
    resume: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Train ``student`` (in place) on ``train_loader``'s ``(x, y)`` batches, distilling from
    ``teacher`` with ``method`` (``"kd"``, ``"kd+fitnet"``, ...; ``"none"``: cross-entropy
    only; default ``"kd"`` with a teacher, else ``"none"``), testing on ``test_loader`` after
    every epoch; ``options`` per method (``{"kd": {"tau": 4}}``), ``settings`` any other
    config key (``{"train.epochs": 5, "optim.lr": 0.05}``). Writes the run into ``out`` (a new
    or empty folder, or the same run with ``resume=True``; ``force``: also after changed
    settings, such as more epochs) and returns its summary (``metrics.json``'s). The teacher,
    frozen while training, is given back as it came (each module's mode, each parameter's
    ``requires_grad``), on the training device; with ``"teacher.train_bn": True`` its
    BatchNorm running statistics have moved, as in the CKDSNN reference."""
    if DistContext.describe_env().enabled:
        raise ConfigError(
            "spikedistill.train runs in one process: it cannot shard loaders it is given. "
            "Under torchrun use the command line (torchrun -m spikedistill train CONFIG) "
            "on a spikedistill dataset"
        )
    method = method or ("kd" if teacher is not None else "none")
    cfg = module_config(student, (train_loader, test_loader), method, options, settings)
    if method != "none" and teacher is None:
        raise ConfigError(f"method {method!r} needs a teacher (teacher=...)")
    run_dir = Path(out)
    with (
        claim_run_dir(run_dir, resume=resume, names=PYTHON_NAMES),  # never over another run
        lent(teacher),
    ):
        trainer = ModuleTrainer(cfg, run_dir, student, train_loader, test_loader, teacher)
        try:
            if resume and (run_dir / "last.pt").exists():
                trainer.resume(force=force)
            return trainer.fit()
        finally:
            trainer.close()
