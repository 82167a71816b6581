r"""A model (ANN or SNN) as ONNX with a dynamic batch dimension (``torch.onnx``, dynamo).

The exported graph computes what ``model(x)`` does in eval mode: ``[B, C, H, W] -> [B, K]``,
for an SNN the mean over its ``T`` steps of the per-step logits (event frames: ``[T, B, C, H,
W]``, or ``[B, T, ...]`` for a ``batch_first`` model). ``T`` is fixed in the graph; ``B`` is not.

The exporter traces a copy of the model whose neurons run the LIF recurrence of
``spiking.kernels.recurrence`` step by step in plain tensor ops (the training kernels are
autograd functions on several backends that the tracer cannot follow):

    v_t = k x_t + decay u_{t-1},   s_t = [v_t >= threshold],
    u_t = v_t - v_t s_t (hard)  or  v_t - threshold s_t (soft)

unrolled over the ``T`` steps. Every neuron variant exports (hard/soft reset, decay_input, IF).
A ``FoldedNeuron`` around another neuron type, or a layer the exporter rejects, raises a
``ConfigError``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, first_line
from ..spiking import FoldedNeuron, NeuronConfig
from ..spiking.kernels.recurrence import charge, fire, reset
from ..spiking.neuron import LIF

OPSET = 18
_EXAMPLE_BATCH = 2  # not 0 or 1, which the tracer would take for a constant size


def _import_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ConfigError(
            f"ONNX export needs onnx and onnxscript ({err}); pip install 'spikedistill[export]'"
        ) from None


class TracedNeuron(FoldedNeuron):
    """A ``FoldedNeuron`` whose LIF runs as ``T`` unrolled steps of plain tensor ops (what
    ``torch.export`` traces); the same dynamics and results as the neuron it replaces."""

    def __init__(self, cfg: NeuronConfig, T: int) -> None:
        super().__init__(nn.Identity(), T)
        self.cfg = cfg

    def forward(self, x: torch.Tensor, static: bool = False) -> torch.Tensor:
        """``[T*B, ...] -> [T*B, ...]``; ``static``: ``x [B, ...]`` drives every step."""
        steps = [x] * self.T if static else list(x.reshape(self.T, -1, *x.shape[1:]).unbind(0))
        spikes, u = [], None
        for x_t in steps:
            v = charge(x_t, u, self.cfg)
            s = fire(v, self.cfg)
            u = reset(v, s, self.cfg)
            spikes.append(s)
        return torch.cat(spikes, 0)

    def extra_repr(self) -> str:
        return f"T={self.T}, {self.cfg}"


def traceable_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with every ``FoldedNeuron`` a ``TracedNeuron``."""
    clone = copy.deepcopy(model).eval()
    for path, module in list(clone.named_modules()):
        for name, child in list(module.named_children()):
            if not isinstance(child, FoldedNeuron):
                continue
            where = f"{path}.{name}" if path else name
            if not isinstance(child.neuron, LIF):
                kind = type(child.neuron).__name__
                raise ConfigError(f"cannot export layer {where} to ONNX: its neuron is a {kind}")
            setattr(module, name, TracedNeuron(child.neuron.config, child.T))
    return clone


def batch_dim(model: nn.Module, sample_shape: tuple[int, ...]) -> int:
    """Where the batch goes in an input of samples of ``sample_shape``: 0, or 1 for time-first
    event frames (a 4-d sample ``T, C, H, W`` of a model that is not ``batch_first``)."""
    return 1 if len(sample_shape) == 4 and not getattr(model, "batch_first", False) else 0


def example_input(model: nn.Module, sample_shape: tuple[int, ...]) -> torch.Tensor:
    """A zero input batch of samples of ``sample_shape`` on the model's device."""
    shape = list(sample_shape)
    shape.insert(batch_dim(model, sample_shape), _EXAMPLE_BATCH)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    return torch.zeros(shape, device=device)


def _metadata(model: nn.Module) -> dict[str, str]:
    meta = {"source": "spikedistill", "model": type(model).__name__}
    if getattr(model, "spiking", False):
        meta["T"] = str(model.T)
    info = getattr(model, "data_info", None)
    if info is not None:
        meta["input_normalisation"] = json.dumps({"mean": info.mean, "std": info.std})
    return meta


def _check_runs(model: nn.Module, x: torch.Tensor) -> None:
    """Run ``model`` on ``x`` once: a wrong input shape fails here, in one clear line."""
    try:
        with torch.no_grad():
            model(x)
    except (RuntimeError, ConfigError) as err:
        shape = tuple(x.shape)
        raise ConfigError(
            f"{type(model).__name__} cannot run on inputs of shape {shape} (is the input shape "
            f"right?): {first_line(err)}"
        ) from err


def _root_cause(err: BaseException) -> BaseException:
    """The innermost exception ``err`` was raised from."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err


@contextlib.contextmanager
def _torch_logs_quiet() -> Iterator[None]:
    """torch's own log records (pages of guard errors while torch.export gives up on a dynamic
    batch) held back during the export: its outcome is checked and reported in one line."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def export_program(model: nn.Module, sample_shape: tuple[int, ...]) -> Any:
    """The ``torch.onnx.ONNXProgram`` of ``model`` (input ``input``, output ``logits``) for
    samples of ``sample_shape``, with a dynamic batch dimension."""
    _import_onnx()
    traced = traceable_copy(model)
    sample_shape = tuple(sample_shape)
    x = example_input(traced, sample_shape)
    _check_runs(traced, x)
    try:
        with torch.no_grad(), warnings.catch_warnings(), _torch_logs_quiet():
            for category in (FutureWarning, DeprecationWarning):  # about torch's internals
                warnings.simplefilter("ignore", category)
            warnings.filterwarnings("ignore", module=r"torch\.")  # tracing notes, e.g. dynamo's
            # state kept as a plain attribute (snnTorch's init_hidden): the batch check names it
            warnings.filterwarnings("ignore", message=r"The tensor attribute .* during export")
            program = torch.onnx.export(
                traced,
                (x,),
                dynamo=True,
                dynamic_shapes=({batch_dim(traced, sample_shape): torch.export.Dim("batch")},),
                input_names=["input"],
                output_names=["logits"],
                opset_version=OPSET,
                verbose=False,
            )
    except Exception as err:  # the exporter's errors have no common base class
        raise ConfigError(
            f"ONNX export of {type(model).__name__} failed: {first_line(_root_cause(err))}"
        ) from err
    batch = program.model.graph.inputs[0].shape[batch_dim(traced, sample_shape)]
    if isinstance(batch, int):  # torch.onnx fell back to a static graph
        raise ConfigError(
            f"ONNX export of {type(model).__name__} fixed the batch at {batch}: its forward "
            "depends on the batch size (e.g. state sized by the first input, as snnTorch's "
            "init_hidden neurons keep), so torch.export found no graph for any batch"
        )
    program.model.metadata_props.update(_metadata(model))
    return program


def save_onnx(program: Any, path: Path) -> str:
    """Write an ``export_program`` to ``path``; returns a one-line summary."""
    program.save(str(path))
    (x,), (y,) = program.model.graph.inputs, program.model.graph.outputs
    return f"opset {OPSET}, {x.name} {_dims(x.shape)} -> {y.name} {_dims(y.shape)}"


def _dims(shape: Any) -> str:
    return f"[{', '.join(str(d) for d in shape)}]"
