r"""A zoo SNN as a NIR graph (``nir``, the optional ``export`` extra), built by walking the model.

nirtorch's tracer cannot follow the zoo's forward (time folding, fused units, direct encoding),
so the graph is built from the module tree. It describes **one time step**: the consumer feeds
the input at every step (the same image under direct encoding, frame ``t`` of event data) and
keeps each neuron's membrane between steps. The ``Output`` node is the last ``Affine`` (``fc``)
per step; spikedistill's logits are the mean of those outputs over the ``T`` steps.

Layers (NIR node):

- ``Conv2d`` / ``Linear`` -> ``Conv2d`` / ``Affine`` (``Linear`` without bias). A BatchNorm
  right after one is folded into it with its running statistics:
  ``W' = W * s``, ``b' = b * s + (beta - mu * s)``, ``s = gamma / sqrt(var + eps)``;
- ``AvgPool2d`` (no padding) -> ``AvgPool2d``; ``AdaptiveAvgPool2d`` whose output size divides
  the map -> ``AvgPool2d`` (kernel = stride = map / output size; none when it is the identity);
- ``Flatten`` -> ``Flatten`` (dims counted without the batch); ``Identity``, ``Dropout`` -> none;
- a residual sum -> several edges into one node (NIR sums a node's inputs);
- a ``FoldedNeuron`` of a spikedistill ``LIF`` with hard reset -> ``LIF`` (``IF`` when
  ``decay = 1``), one value per neuron.

The neuron mapping is ``nir_neuron``'s.

Not expressible (``ConfigError`` naming the layer): soft reset (NIR's LIF/IF reset to
``v_reset``; there is no reset by subtraction), max-pooling (NIR has none), a BatchNorm that
does not follow a convolution or linear layer (pre-activation blocks: WRN, PyramidNet),
padded or ceil-mode average pooling, ReLU (an ANN), and any other module. ``CubaLIF`` is not
used: the neuron has no synaptic current (a ``CubaLIF`` with ``tau_syn = dt`` would be the same
``LIF``). NIR fires at ``v > v_threshold``, spikedistill at ``v >= threshold``: they differ only
for a membrane exactly at the threshold. The surrogate, ``detach_reset`` and training-mode
BatchNorm statistics concern training only and are not exported.

snnTorch 1.0's ``import_nir`` reads these graphs back as ``Leaky(beta=decay, reset "zero")``
with the same spikes (``tests/test_export.py``), with three quirks: for ``k != 1`` it divides
the threshold by ``k`` instead of scaling the input (equal up to rounding); it cannot load
``IF`` nodes (it asserts ``r == 1`` and would build a leaky neuron), so ``decay = 1`` graphs do
not import there; and it maps NIR's ``Flatten(start_dim=0)`` to torch's ``Flatten(0)``, which
flattens the batch too: feed it one sample at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, first_line
from ..models.base import ZooModel
from ..models.blocks import BasicBlock
from ..spiking import FoldedNeuron, FusedSequential
from ..spiking.layers import AdaptiveAvgPool2d, pool_is_identity
from ..spiking.neuron import LIF
from ..spiking.norm_lif import bn_scale_shift
from .nir_neuron import DEFAULT_DT, import_nir, neuron_node

_BatchNorm = nn.modules.batchnorm._BatchNorm


def _unsupported(path: str, module: nn.Module, why: str) -> ConfigError:
    return ConfigError(f"cannot export layer {path} ({type(module).__name__}) to NIR: {why}")


@dataclass(frozen=True)
class Value:
    """A tensor of the per-step graph: the sum of the outputs of ``sources``, of ``shape``
    (without the batch)."""

    sources: tuple[str, ...]
    shape: tuple[int, ...]

    def __add__(self, other: Value) -> Value:
        if self.shape != other.shape:
            raise ConfigError(f"residual sum of shapes {self.shape} and {other.shape}")
        return Value(self.sources + other.sources, self.shape)


@dataclass
class GraphBuilder:
    """The nodes and edges of the graph being built; ``walk`` adds a module's nodes."""

    dt: float
    nodes: dict[str, Any] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, node: Any, value: Value, shape: tuple[int, ...]) -> Value:
        """Add ``node`` fed by ``value``; returns its output."""
        self.nodes[name] = node
        self.edges += [(source, name) for source in value.sources]
        return Value((name,), shape)

    def walk(self, module: nn.Module, path: str, value: Value) -> Value:
        """Add the nodes of ``module`` (at ``path`` in the model) fed by ``value``."""
        handler = LAYERS.get(type(module))
        if handler is None:
            raise _unsupported(path, module, "no NIR node for this layer")
        return handler(self, module, path, value)


Handler = Callable[[GraphBuilder, nn.Module, str, Value], Value]


def _out_shape(module: nn.Module, shape: tuple[int, ...], path: str) -> tuple[int, ...]:
    """The per-sample output shape of a stateless ``module`` (at ``path``) on inputs of
    ``shape``."""
    try:
        with torch.no_grad():
            return tuple(module(module.weight.new_zeros(1, *shape)).shape[1:])
    except RuntimeError as err:
        raise ConfigError(
            f"layer {path} ({type(module).__name__}) cannot take inputs of shape {shape} "
            f"(is the input shape right?): {first_line(err)}"
        ) from None


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy().copy()


def fold_batch_norm(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: _BatchNorm, path: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W', b')`` of a layer ``(weight, bias)`` followed by the eval-mode ``bn``:
    ``W' = W * s`` (per output channel), ``b' = b * s + t`` with ``BN(y) = y * s + t``,
    ``s = gamma / sqrt(var + eps)``, ``t = beta - mu * s`` (computed in float64)."""
    if bn.running_mean is None or bn.running_var is None:
        raise _unsupported(path, bn, "a BatchNorm without running statistics cannot be folded")
    f64 = torch.float64
    invstd = torch.rsqrt(bn.running_var.to(f64) + bn.eps)
    gamma = None if bn.weight is None else bn.weight.to(f64)
    beta = None if bn.bias is None else bn.bias.to(f64)
    scale, shift = bn_scale_shift(gamma, beta, bn.running_mean.to(f64), invstd)
    w = weight.to(f64) * scale.view(-1, *([1] * (weight.dim() - 1)))
    b = shift if bias is None else bias.to(f64) * scale + shift
    return w, b


def _affine(
    builder: GraphBuilder, layer: nn.Module, bn: _BatchNorm | None, path: str, value: Value
) -> Value:
    """``layer`` (a ``Conv2d`` or ``Linear``), with ``bn`` folded into it when given."""
    weight, bias = layer.weight, layer.bias
    if bn is not None:
        weight, bias = fold_batch_norm(weight, bias, bn, path)
    return AFFINE_LAYERS[type(layer)](builder, layer, weight, bias, path, value)


def _conv2d(
    builder: GraphBuilder,
    conv: nn.Conv2d,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    path: str,
    value: Value,
) -> Value:
    if conv.padding_mode != "zeros":
        raise _unsupported(path, conv, f"padding_mode {conv.padding_mode!r} (NIR pads with 0)")
    nir = import_nir()
    bias = torch.zeros(weight.shape[0]) if bias is None else bias
    node = nir.Conv2d(
        input_shape=value.shape[1:],
        weight=_numpy(weight),
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=_numpy(bias),
    )
    return builder.add(path, node, value, _out_shape(conv, value.shape, path))


def _linear(
    builder: GraphBuilder,
    linear: nn.Linear,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    path: str,
    value: Value,
) -> Value:
    if value.shape != (weight.shape[1],):
        raise ConfigError(
            f"layer {path} (Linear) takes {weight.shape[1]} features, not inputs of shape "
            f"{value.shape} (is the input shape right?)"
        )
    nir = import_nir()
    if bias is None:
        node = nir.Linear(weight=_numpy(weight))
    else:
        node = nir.Affine(weight=_numpy(weight), bias=_numpy(bias))
    return builder.add(path, node, value, (weight.shape[0],))


AFFINE_LAYERS = {nn.Conv2d: _conv2d, nn.Linear: _linear}


def _layer(builder: GraphBuilder, module: nn.Module, path: str, value: Value) -> Value:
    return _affine(builder, module, None, path, value)


def _sequential(builder: GraphBuilder, seq: nn.Module, path: str, value: Value) -> Value:
    """The children in order; a BatchNorm right after a conv / linear layer folds into it."""
    children = list(seq.named_children())
    i = 0
    while i < len(children):
        name, child = children[i]
        child_path = f"{path}.{name}" if path else name
        following = children[i + 1][1] if i + 1 < len(children) else None
        if type(child) in AFFINE_LAYERS and isinstance(following, _BatchNorm):
            value = _affine(builder, child, following, child_path, value)
            i += 2
            continue
        value = builder.walk(child, child_path, value)
        i += 1
    return value


def _basic_block(builder: GraphBuilder, block: BasicBlock, path: str, value: Value) -> Value:
    """``act2(bn2(conv2(act1(bn1(conv1(x))))) + shortcut(x))``: the sum is two edges."""
    out = _affine(builder, block.conv1, block.bn1, f"{path}.conv1", value)
    out = builder.walk(block.act1, f"{path}.act1", out)
    main = _affine(builder, block.conv2, block.bn2, f"{path}.conv2", out)
    short = builder.walk(block.shortcut, f"{path}.shortcut", value)
    return builder.walk(block.act2, f"{path}.act2", main + short)


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _avg_pool_node(
    builder: GraphBuilder, kernel: tuple[int, int], stride: tuple[int, int], path: str, value: Value
) -> Value:
    nir = import_nir()
    c, h, w = value.shape
    out = (c, (h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1)
    node = nir.AvgPool2d(
        kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array([0, 0])
    )
    return builder.add(path, node, value, out)


def _avg_pool(builder: GraphBuilder, pool: nn.AvgPool2d, path: str, value: Value) -> Value:
    if _pair(pool.padding) != (0, 0) or pool.ceil_mode or pool.divisor_override:
        raise _unsupported(path, pool, "padding, ceil_mode and divisor_override are not exported")
    kernel = _pair(pool.kernel_size)
    stride = kernel if pool.stride is None else _pair(pool.stride)
    return _avg_pool_node(builder, kernel, stride, path, value)


def _adaptive_avg_pool(
    builder: GraphBuilder, pool: nn.AdaptiveAvgPool2d, path: str, value: Value
) -> Value:
    """An ``AvgPool2d`` with kernel = stride = map / output size, where that divides."""
    _, h, w = value.shape
    if pool_is_identity(pool, torch.empty(0, h, w)):
        return value
    size = pool.output_size
    oh, ow = (size, size) if isinstance(size, int) else size
    oh, ow = oh or h, ow or w
    if h % oh or w % ow:
        raise _unsupported(path, pool, f"output size {(oh, ow)} does not divide the map {(h, w)}")
    return _avg_pool_node(builder, (h // oh, w // ow), (h // oh, w // ow), path, value)


def _flatten(builder: GraphBuilder, flatten: nn.Flatten, path: str, value: Value) -> Value:
    """NIR counts dims without the batch: torch ``start_dim=1`` is NIR's 0."""
    if flatten.start_dim < 1:
        raise _unsupported(path, flatten, "it flattens the batch dimension")
    nir = import_nir()
    start = flatten.start_dim - 1
    end = flatten.end_dim - 1 if flatten.end_dim > 0 else flatten.end_dim
    node = nir.Flatten(input_type={"input": np.array(value.shape)}, start_dim=start, end_dim=end)
    return builder.add(path, node, value, tuple(int(d) for d in node.output_type["output"]))


def _passthrough(builder: GraphBuilder, module: nn.Module, path: str, value: Value) -> Value:
    return value


def _refuse(why: str) -> Handler:
    def handler(builder: GraphBuilder, module: nn.Module, path: str, value: Value) -> Value:
        raise _unsupported(path, module, why)

    return handler


def _neuron(builder: GraphBuilder, act: FoldedNeuron, path: str, value: Value) -> Value:
    if not isinstance(act.neuron, LIF):
        raise _unsupported(path, act, f"its neuron is a {type(act.neuron).__name__}, not a LIF")
    node = neuron_node(act.neuron.config, value.shape, builder.dt, path)
    return builder.add(path, node, value, value.shape)


LAYERS: dict[type[nn.Module], Handler] = {
    nn.Sequential: _sequential,
    FusedSequential: _sequential,
    BasicBlock: _basic_block,
    nn.Conv2d: _layer,
    nn.Linear: _layer,
    nn.AvgPool2d: _avg_pool,
    nn.AdaptiveAvgPool2d: _adaptive_avg_pool,
    AdaptiveAvgPool2d: _adaptive_avg_pool,
    nn.Flatten: _flatten,
    nn.Identity: _passthrough,
    nn.Dropout: _passthrough,  # eval mode: the identity
    FoldedNeuron: _neuron,
    nn.MaxPool2d: _refuse(
        "NIR has no max-pooling: export a model without it (e.g. the vgg family with "
        "pool: avg; convnet3 and the ImageNet-stem resnets max-pool)"
    ),
    nn.BatchNorm1d: _refuse("a BatchNorm is exported only folded into the layer before it"),
    nn.BatchNorm2d: _refuse("a BatchNorm is exported only folded into the layer before it"),
    nn.ReLU: _refuse("ReLU has no NIR node; export a spiking model (model.spiking=true)"),
}


def _zoo_nodes(builder: GraphBuilder, model: ZooModel, value: Value) -> Value:
    """``stem -> stem_act -> stages -> head``, as the model runs one step."""
    value = builder.walk(model.stem, "stem", value)
    value = builder.walk(model.stem_act, "stem_act", value)
    for name, stage in model.stages():
        value = builder.walk(stage, name, value)
    return builder.walk(model.head, "head", value)


def _metadata(model: ZooModel, dt: float) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "source": "spikedistill",
        "model": type(model).__name__,
        "dt": dt,
        "T": model.T,
        "readout": "logits = mean over the T steps of the output",
    }
    info = getattr(model, "data_info", None)
    if info is not None:
        meta["input_mean"] = np.array(info.mean, dtype=np.float64)
        meta["input_std"] = np.array(info.std, dtype=np.float64)
        frames = "frame t at step t" if info.time_steps else "the same image at every step"
        meta["input"] = f"normalised (x - input_mean) / input_std; {frames}"
    return meta


def to_nir(model: nn.Module, input_shape: tuple[int, ...], dt: float = DEFAULT_DT) -> Any:
    """The ``nir.NIRGraph`` of one time step of the zoo SNN ``model`` (in eval mode: BatchNorm
    running statistics) for inputs of per-step shape ``input_shape`` ``(C, H, W)``."""
    if not isinstance(model, ZooModel):
        raise ConfigError(f"NIR export walks zoo models only, not a {type(model).__name__}")
    if not model.spiking:
        raise ConfigError("NIR export needs a spiking model (an ANN's ReLU has no NIR node)")
    if not (math.isfinite(dt) and dt > 0):
        raise ConfigError(f"dt must be a finite number > 0, got {dt}")
    nir = import_nir()
    shape = tuple(int(d) for d in input_shape)
    builder = GraphBuilder(dt)
    builder.nodes["input"] = nir.Input(input_type={"input": np.array(shape)})
    value = _zoo_nodes(builder, model, Value(("input",), shape))
    builder.add("output", nir.Output(output_type={"output": np.array(value.shape)}), value, ())
    return nir.NIRGraph(nodes=builder.nodes, edges=builder.edges, metadata=_metadata(model, dt))


def build_nir(model: nn.Module, sample_shape: tuple[int, ...], dt: float = DEFAULT_DT) -> Any:
    """``to_nir`` for samples of ``sample_shape``: its last three dims (``C, H, W``) are one
    step's input, with or without event frames in front."""
    return to_nir(model, tuple(sample_shape[-3:]), dt)


def save_nir(graph: Any, path: Path) -> str:
    """Write ``graph`` to ``path`` (NIR's HDF5 file); returns a one-line summary."""
    import_nir().write(path, graph)
    dt = graph.metadata.get("dt")
    return f"{len(graph.nodes)} nodes, {len(graph.edges)} edges, dt={dt:g}"
