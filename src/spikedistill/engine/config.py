"""The experiment configuration: YAML -> ``ExperimentConfig`` (validated, with overrides)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..metrics.stm import STM_VARIANTS
from ..spiking.kernels import LIF_BACKENDS
from .options import check_free_form
from .run_paths import file_config
from .schema import apply_overrides, from_dict, load_yaml, to_dict


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass
class DataConfig:
    name: str = "mnist"  # the dataset
    root: str | None = None  # data root (--data-dir wins); else $SPIKEDISTILL_DATA, ~/.cache/...
    download: bool = False  # download the dataset if it is missing (where it can be)
    batch_size: int = 128  # training batch (global: split over the processes under torchrun)
    eval_batch_size: int = 1000  # test-set evaluation batch
    augment: list[str] = field(default_factory=list)  # training augmentations
    train_subset: int | None = None  # class-balanced subset of the training set
    label_noise: float = 0.0  # symmetric label noise on the training labels
    num_workers: int = 0  # DataLoader worker processes (0: load in the training process)
    check_finite: bool = True  # refuse NaN/inf inputs on the first pass over the data
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific options

    def validate(self) -> None:
        _check(self.batch_size >= 1, f"data.batch_size must be >= 1, got {self.batch_size}")
        _check(self.eval_batch_size >= 1, "data.eval_batch_size must be >= 1")
        _check(
            0.0 <= self.label_noise < 1.0,
            f"data.label_noise must lie in [0, 1), got {self.label_noise}",
        )
        _check(self.num_workers >= 0, "data.num_workers must be >= 0")


@dataclass
class ModelConfig:
    name: str = "convnet3"  # the network trained (the student, or a teacher trained here)
    spiking: bool = False  # a spiking network (SNN); false: an ANN
    T: int = 4  # time steps of a spiking network
    neuron: str = "tdbn"  # the spiking neuron preset
    neuron_kwargs: dict[str, Any] = field(default_factory=dict)  # overrides of the preset
    options: dict[str, Any] = field(default_factory=dict)  # architecture options (width, ...)
    init_from: str | None = None  # start from these weights (any layout teacher.checkpoint reads)

    def validate(self) -> None:
        _check(self.T >= 1, f"model.T must be >= 1, got {self.T}")


@dataclass
class OptimConfig:
    name: str = "sgd"  # the optimizer
    lr: float = 0.1  # peak learning rate
    momentum: float = 0.9  # SGD momentum (adamw: unused)
    nesterov: bool = False  # SGD with Nesterov momentum
    weight_decay: float = 5e-4  # weight decay (adamw: decoupled)
    no_decay_bn_bias: bool = False  # weight decay on conv/linear weights only

    def validate(self) -> None:
        _check(self.name in ("sgd", "adamw"), f"optim.name must be sgd or adamw, got {self.name!r}")
        _check(self.lr > 0, f"optim.lr must be > 0, got {self.lr}")
        _check(self.weight_decay >= 0, "optim.weight_decay must be >= 0")
        _check(0 <= self.momentum < 1, "optim.momentum must lie in [0, 1)")


@dataclass
class SchedConfig:
    name: str = "cosine"  # the learning-rate schedule, per step
    step_size: int = 30  # step: decay every step_size epochs
    milestones: list[int] = field(default_factory=list)  # multistep: epochs
    gamma: float = 0.1  # step, multistep: the factor at each decay
    warmup_epochs: float = 0.0  # linear warmup from 0, per step
    min_lr: float = 0.0  # cosine floor

    def validate(self) -> None:
        names = ("none", "step", "multistep", "cosine")
        _check(self.name in names, f"sched.name must be one of {names}, got {self.name!r}")
        _check(self.warmup_epochs >= 0, "sched.warmup_epochs must be >= 0")
        _check(self.step_size >= 1, "sched.step_size must be >= 1")
        _check(self.gamma > 0, f"sched.gamma must be > 0, got {self.gamma}")
        _check(self.min_lr >= 0, f"sched.min_lr must be >= 0, got {self.min_lr}")
        _check(
            all(m >= 1 for m in self.milestones),
            f"sched.milestones must be epochs >= 1, got {self.milestones}",
        )


@dataclass
class TrainConfig:
    epochs: int = 10  # training epochs
    seed: int = 0  # seed of weights, data order and augmentation
    deterministic: bool = False  # deterministic torch kernels (slower)
    amp: str = "none"  # mixed precision: bf16 (autocast) or fp16 (+ gradient scaler, GPUs)
    compile: bool = False  # torch.compile the student's training forward (BPTT)
    sync_bn: bool = False  # SyncBatchNorm across processes under torchrun (GPUs)
    device: str = "auto"  # where to train (auto: a GPU if there is one)
    grad_clip: float | None = None  # clip the gradient norm to this (null: no clipping)
    log_every: int = 20  # steps between log lines
    checkpoint_every: int = 0  # also write last.pt every N steps (0: at epoch ends only)
    eval_every: int = 1  # evaluate on the test set every N epochs (and after the last one)
    backprop: str = "bptt"  # training rule: bptt (through time), rate (rate-based, Rate-BP)
    rate_grad_scale: bool = False  # Rate-BP: scale the loss gradient by 1/T (the reference)
    rate_stored_steps: int = 4  # Rate-BP spike pass: steps' worth of float a layer may hold
    threads: int | None = None  # torch CPU threads
    stm_every: int = 0  # with a teacher: STM on a fixed test batch every N evaluated epochs
    stm_variant: str = "paper"  # paper (SASTC: ln, raw Grams, mean) | normalized (the former)
    skip_nonfinite: int = 0  # NaN/inf-loss steps skipped (no update) before the run stops
    neuron_backend: str = "auto"  # LIF kernel implementation (spiking.kernels; same results)

    def validate(self) -> None:
        _check(self.epochs >= 1, f"train.epochs must be >= 1, got {self.epochs}")
        _check(self.seed >= 0, f"train.seed must be >= 0, got {self.seed}")
        _check(
            self.grad_clip is None or self.grad_clip > 0,
            f"train.grad_clip must be > 0 (or null: no clipping), got {self.grad_clip}",
        )
        _check(
            self.threads is None or self.threads >= 1,
            f"train.threads must be >= 1 (or null: torch's default), got {self.threads}",
        )
        _check(
            re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None,
            f"train.device must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )
        _check(
            self.amp in ("none", "bf16", "fp16"),
            f"train.amp must be none, bf16 or fp16, got {self.amp!r}",
        )
        _check(self.log_every >= 1, "train.log_every must be >= 1")
        _check(self.checkpoint_every >= 0, "train.checkpoint_every must be >= 0")
        _check(self.eval_every >= 1, "train.eval_every must be >= 1")
        _check(
            self.backprop in ("bptt", "rate"),
            f"train.backprop must be bptt or rate, got {self.backprop!r}",
        )
        _check(
            isinstance(self.rate_stored_steps, int) and self.rate_stored_steps >= 1,
            f"train.rate_stored_steps must be an integer >= 1, got {self.rate_stored_steps!r}",
        )
        _check(self.skip_nonfinite >= 0, "train.skip_nonfinite must be >= 0")
        _check(self.stm_every >= 0, "train.stm_every must be >= 0")
        _check(
            self.stm_variant in STM_VARIANTS,
            f"train.stm_variant must be one of {', '.join(STM_VARIANTS)}, got {self.stm_variant!r}",
        )
        backends = ["auto", *LIF_BACKENDS.names()]
        _check(
            self.neuron_backend in backends,
            f"train.neuron_backend must be one of {', '.join(backends)}, "
            f"got {self.neuron_backend!r}",
        )


@dataclass
class TeacherConfig:
    name: str | None = None  # the ANN teacher (null: no teacher)
    checkpoint: str | None = None  # its weights: state dict, RepDistiller, torchvision, DDP ...
    options: dict[str, Any] = field(default_factory=dict)  # architecture options
    train_bn: bool = False  # reproduce CKDSNN's train-mode teacher BN (off: eval mode)
    cache: bool = False  # store teacher outputs per sample (needs data without augmentation)
    ema: bool = False  # load the checkpoint's EMA weights (state_dict_ema, model_ema or ema)


@dataclass
class DistillConfig:
    method: str = "none"  # distillation method(s), e.g. kd or samd+nld (none: CE only)
    ce_weight: float = 1.0  # weight of the cross-entropy on the student's logits
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per method: {kd: {tau: 4}}

    def validate(self) -> None:
        _check(self.ce_weight >= 0, f"distill.ce_weight must be >= 0, got {self.ce_weight}")
        self.method = "+".join(n.strip() for n in self.method.split("+"))  # as recorded


@dataclass
class ExperimentConfig:
    name: str = "run"  # the experiment's name (logs, checkpoints)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def validate(self) -> None:
        check_free_form(self)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def load_config(path: str | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load a YAML experiment (or the defaults) and apply dotted ``key=value`` overrides."""
    data = file_config(load_yaml(path), path) if path else {}
    return from_dict(ExperimentConfig, apply_overrides(data, list(overrides or [])))


def config_from_dict(data: dict[str, Any], *, methods: bool = True) -> ExperimentConfig:
    """The config ``data`` describes, checked; ``methods=False``: the distillation methods are
    not looked up (a run read back for its student, where their code may not import; building
    the objective checks them)."""
    if methods or not isinstance(data, dict):
        return from_dict(ExperimentConfig, data)
    cfg = from_dict(ExperimentConfig, {**data, "distill": {}})
    cfg.distill = from_dict(DistillConfig, data.get("distill", {}), "distill")
    return cfg
