r"""Neuron backends: the kernels behind the multi-step LIF, one class each (``base``).

- ``torch`` (``base.LIFBackend``): the pure-PyTorch reference, a few full-size ops per step;
- ``compile`` (``compiled``): the same scans compiled by ``torch.compile``;
- ``cpp`` (``cpp``): hand-written C++ loops, CPU only, built once per machine (about 20 s);
- ``triton`` (``triton_backend``): hand-written Triton kernels of every scan, CUDA (CPU: interpreter
  only).

A model chooses its backend: every ``LIF`` has a ``backend`` attribute, ``"auto"`` unless set
(``spiking.set_backend(model, name)``, ``train.neuron_backend``). ``backend_for(name, device)``
turns the name into the backend for a device: ``auto`` takes the first of ``AUTO[device type]``
that can run there, else ``torch`` (with a warning); a named backend that cannot run raises
``ConfigError``. The choice per (name, device type) is made, and built, once per process.
"""

from __future__ import annotations

import threading
import warnings

import torch

from ...errors import ConfigError, UnknownNameError
from ...registry import Registry
from .base import LIFBackend
from .compiled import CompiledBackend
from .cpp import CppBackend
from .triton_backend import TritonBackend
from .unit import BatchStats, NormDrive

LIF_BACKENDS: Registry[LIFBackend] = Registry("neuron backend")
LIF_BACKENDS.register("torch")(LIFBackend())
LIF_BACKENDS.register("compile")(CompiledBackend())
LIF_BACKENDS.register("cpp")(CppBackend())
LIF_BACKENDS.register("triton")(TritonBackend())

#: what ``auto`` tries, in order, per device type (then ``torch``): on a GPU the hand-written
#: Triton kernels, else ``compile`` (Inductor writes Triton kernels there); ``cpp`` on a CPU
#: (compiling per layer shape takes longer than short runs save; ``spikedistill bench
#: --backend`` shows the trade)
AUTO: dict[str, tuple[str, ...]] = {"cuda": ("triton", "compile"), "cpu": ("cpp",)}
#: ``(name, device type) -> backend name``: what ``choose_backend`` decided (a fact of the
#: machine, decided once: every call on a device gets the same kernels)
_chosen: dict[tuple[str, str], str] = {}
_choosing = threading.Lock()


def check_backend_name(name: str) -> str:
    """``name`` if it is ``auto`` or a registered backend, else ``UnknownNameError``."""
    if name != "auto" and name not in LIF_BACKENDS:
        message = LIF_BACKENDS.unknown_message(name)
        raise UnknownNameError(message.replace("Valid: ", "Valid: auto, "))
    return name


def _check(name: str, device: torch.device) -> None:
    """Raise ``ConfigError`` unless ``name`` can run on ``device``; build what it needs."""
    backend = LIF_BACKENDS.get(name)
    reason = backend.unavailable(device)
    if reason:
        raise ConfigError(f"neuron backend {name!r} cannot run on {device}: {reason}")
    backend.prepare()


@torch.compiler.disable  # it may build an extension: never traced
def choose_backend(name: str, device: torch.device | str = "cpu") -> str:
    """The backend ``name`` (or ``auto``) stands for on ``device``, checked and built.

    ``auto`` takes ``AUTO[device type]``, else ``torch``, and reports that fallback with
    ``warnings.warn``; a named backend that cannot run on ``device`` (or fails to build)
    raises ``ConfigError``, an unknown name ``UnknownNameError``."""
    check_backend_name(name)
    device = torch.device(device)
    with _choosing:  # one build and one warning, whichever thread asks first
        if (name, device.type) not in _chosen:
            _chosen[name, device.type] = _choose(name, device)
    return _chosen[name, device.type]


def _choose(name: str, device: torch.device) -> str:
    if name == "auto":
        reasons = []
        for chosen in AUTO.get(device.type, ()):
            try:
                _check(chosen, device)
                return chosen
            except ConfigError as err:
                reasons.append(str(err))
        if reasons:
            warnings.warn(f"{'; '.join(reasons)}; using 'torch'", stacklevel=2)
        chosen = "torch"
    else:
        _check(name, device)
        chosen = name
    return chosen


def clear_backend_choices() -> None:
    """Forget what ``choose_backend`` decided (tests; a machine whose tools changed)."""
    _chosen.clear()


def backend_for(name: str, device: torch.device) -> LIFBackend:
    """The backend object that runs a neuron set to ``name`` on ``device``."""
    chosen = _chosen.get((name, device.type))
    return LIF_BACKENDS.get(chosen if chosen is not None else choose_backend(name, device))


__all__ = [
    "AUTO",
    "LIF_BACKENDS",
    "BatchStats",
    "LIFBackend",
    "NormDrive",
    "backend_for",
    "check_backend_name",
    "choose_backend",
    "clear_backend_choices",
]
