"""What a run is built from before training: its device, its seeds, its student."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import torch
from torch import nn

from ..data import dataset_options
from ..errors import ConfigError, SpikeDistillError, first_line, is_out_of_memory
from ..models import build_model
from ..models.contract import batch_size_of, check_logits, check_student, other_neurons
from ..spiking import fuse_units
from .config import ExperimentConfig, TrainConfig

#: ``train.amp`` -> the autocast dtype (``None``: full precision)
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str, option: str = "train.device") -> torch.device:
    """``auto`` is CUDA when available, else the CPU; else ``cpu``, ``cuda`` or ``cuda:N``
    (``option`` names the setting in the error)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"{option}={name!r} is not a device; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{option}={name!r} but CUDA is not available; use cpu or auto")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ConfigError(f"{option}={name!r} but this machine has {count} GPU(s)")
    return device


def check_device_options(t: TrainConfig, device: torch.device, distributed: bool) -> None:
    """``ConfigError`` for ``train`` options that cannot work together on ``device``."""
    if t.amp == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp=fp16 needs a GPU (it uses a gradient scaler); use bf16")
    if t.sync_bn and distributed and device.type != "cuda":
        raise ConfigError("train.sync_bn needs GPUs (PyTorch's SyncBatchNorm has no CPU path)")
    if t.backprop == "rate" and (t.sync_bn or t.compile):
        raise ConfigError("train.sync_bn and train.compile work with train.backprop=bptt only")


def run_kind(cfg: ExperimentConfig, model: nn.Module, backend: str) -> str:
    """The start line's words for the model: ``"ANN"``, or ``"SNN T=4, cpp neurons, BPTT"``
    (the neurons of another library named by their class, e.g. ``LIFNode``)."""
    if not cfg.model.spiking:
        return "ANN"
    backprop = "Rate-BP" if cfg.train.backprop == "rate" else "BPTT"
    return f"SNN T={cfg.model.T}, {other_neurons(model) or backend} neurons, {backprop}"


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python and torch; ``deterministic``: deterministic kernels where torch has them."""
    random.seed(seed)
    torch.manual_seed(seed)
    # set either way: a run's config decides, not an earlier run in the same process
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def _has_frames(cfg: ExperimentConfig) -> bool:
    """Whether the dataset takes ``data.options.frames`` (the event datasets do)."""
    try:
        return "frames" in dataset_options(cfg.data.name)
    except ConfigError:  # your own builder, where it does not import
        return False


def build_student(
    cfg: ExperimentConfig, num_classes: int, in_channels: int, time_steps: int | None = None
) -> nn.Module:
    """The student of ``cfg.model``; ``time_steps``: the frames per sample of event data."""
    m = cfg.model
    if time_steps is not None and m.spiking and time_steps != m.T:
        raise ConfigError(
            f"the data gives {time_steps} event frames per sample but model.T={m.T}; "
            f"set model.T={time_steps}" + f" (or data.options.frames={m.T})" * _has_frames(cfg)
        )
    options = {"in_channels": in_channels, **m.options}
    if m.spiking:
        options.update(T=m.T, neuron=m.neuron, neuron_kwargs=m.neuron_kwargs)
    elif m.neuron_kwargs:
        raise ConfigError("model.neuron_kwargs is set but model.spiking is false")
    model = build_model(m.name, num_classes, spiking=m.spiking, **options)
    fuse_units(model)  # a zoo model is fused already; warns about unfused layers
    return model


@contextlib.contextmanager
def first_forward(what: str, x: torch.Tensor) -> Iterator[None]:
    """A ``ConfigError`` naming ``what`` and the input shape for an error of the first forward
    on real data (e.g. a network too deep for the image size); out of memory passes through."""
    try:
        yield
    except (RuntimeError, ValueError, IndexError) as err:
        if is_out_of_memory(err) or isinstance(err, SpikeDistillError):  # says what it is
            raise
        raise ConfigError(
            f"{what} cannot run on this data (a batch of shape {tuple(x.shape)}): {first_line(err)}"
        ) from err


@torch.no_grad()
def probe_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The student contract checked, then one forward in eval mode (no statistics updated) on
    two samples of ``x``: their logits, checked."""
    check_student(model)
    was_training = model.training
    model.eval()
    try:
        two = x[:, :2] if x.dim() == 5 else x[:2]  # event frames are time-first
        logits = model(two)
        check_logits(model, logits, batch_size_of(two))
        return logits
    finally:
        model.train(was_training)
