"""``ZooModel``: the common skeleton of every zoo architecture, buildable as ANN or SNN.

A model is ``stem -> stem_act -> stages (stage_names) -> head``. ANN and SNN builds have the same
module names and parameters; only the activations differ (``ReLU`` vs a folded multi-step
neuron). SNN tensors travel time-folded as ``[T*B, ...]`` (see ``spiking.layers``).

Shapes: ANN ``[B, C, H, W] -> [B, K]``. SNN: static ``[B, C, H, W]`` (direct encoding: the
stateless stem runs once, its output is repeated over T) or event frames ``[T, B, C, H, W]``
(``[B, T, ...]`` with ``batch_first=True``) ``-> [B, K]``, the mean of the per-step logits, or
``[T, B, K]`` with ``forward(x, per_step=True)``.

With ``checkpoint_blocks=True`` a training forward keeps only each block's input and
recomputes the block in backward (``torch.utils.checkpoint``): a block is a residual block
of a stage, or the whole stage when its children are plain layers (VGG, ``convnet3``).
BatchNorm running statistics are restored after the recomputation, so they see every
batch once, as without checkpointing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError
from ..spiking import LIF, FoldedNeuron, NeuronConfig, neuron_config, repeat_folded, time_first
from ..spiking.fusion import inline_steps
from ..spiking.norm_lif import has_hooks, run_layers
from ..spiking.saved_spikes import is_marked, is_spike_map, mark_spikes, spikes_saved_as_bool


class ZooModel(nn.Module):
    stem: nn.Module
    stem_act: nn.Module
    head: nn.Module
    feature_layout = "folded"  # tapped SNN maps are [T*B, ...] (models.contract)

    def __init__(
        self,
        spiking: bool = False,
        T: int = 4,
        neuron: str | NeuronConfig = "tdbn",
        neuron_kwargs: dict[str, Any] | None = None,
        batch_first: bool = False,
        checkpoint_blocks: bool = False,
    ) -> None:
        super().__init__()
        if spiking and (not isinstance(T, int) or T < 1):
            raise ConfigError(f"number of time steps T must be an integer >= 1, got {T!r}")
        self.spiking = spiking
        self._T = T if spiking else 1
        self.neuron_config = neuron_config(neuron, **(neuron_kwargs or {})) if spiking else None
        self.batch_first = batch_first
        self.checkpoint_blocks = checkpoint_blocks
        self.stage_names: list[str] = []

    # -- construction helpers -------------------------------------------------------------
    def act(self) -> nn.Module:
        """A fresh activation: ``ReLU`` for an ANN, a time-folded LIF for an SNN."""
        if self.spiking:
            return FoldedNeuron(LIF(self.neuron_config), self._T)
        return nn.ReLU(inplace=True)

    # -- time steps -----------------------------------------------------------------------
    @property
    def T(self) -> int:
        return self._T

    @T.setter
    def T(self, value: int) -> None:
        if not self.spiking:
            raise ConfigError("an ANN has no time steps")
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"number of time steps T must be an integer >= 1, got {value!r}")
        self._T = value
        for module in self.modules():
            if isinstance(module, FoldedNeuron):
                module.T = value

    # -- forward --------------------------------------------------------------------------
    def stages(self) -> list[tuple[str, nn.Module]]:
        """The ordered stages ``[(name, module)]`` (feature taps, block-wise replacement)."""
        return [(name, getattr(self, name)) for name in self.stage_names]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Input -> stem output after its activation, ``[B, ...]`` (ANN) or ``[T*B, ...]``.
        An ANN given event frames ``[T, B, C, H, W]`` sees their mean over time."""
        if x.dim() == 5 and not self.spiking:
            x = time_first(x, self.batch_first).mean(0)
        if x.dim() == 4:
            if not self.spiking:
                return self._stem(x, static=False)
            if isinstance(self.stem_act, FoldedNeuron):  # the stem output is not copied T times
                return self._stem(x, static=True)
            return self.stem_act(repeat_folded(self.stem(x), self._T))
        if x.dim() == 5 and self.spiking:
            x = time_first(x, self.batch_first)
            if x.shape[0] != self._T:
                raise ConfigError(
                    f"input has {x.shape[0]} time steps but the model runs T={self._T}; "
                    f"set model.T = {x.shape[0]} (or check batch_first={self.batch_first})"
                )
            return self._stem(x.flatten(0, 1), static=False)
        raise ConfigError(
            f"input must be [B, C, H, W] or [T, B, C, H, W], got shape {tuple(x.shape)}"
        )

    def _stem(self, x: torch.Tensor, static: bool) -> torch.Tensor:
        """``stem_act(stem(x))``; a stem ending in BatchNorm shares ``norm_act`` with its neuron.
        ``static``: ``x [B, ...]`` drives every step."""
        if isinstance(self.stem, nn.Sequential) and not has_hooks(self.stem):
            return run_layers([*self.stem, self.stem_act], x, static=static)
        z = self.stem(x)
        return self.stem_act(z, static=True) if static else self.stem_act(z)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encode(x)
        recompute = self.checkpoint_blocks and self.training and torch.is_grad_enabled()
        for _, stage in self.stages():
            steps = None if recompute else inline_steps(stage)
            if steps is not None:  # run here: an input no layer saves is freed once used
                for step in steps:
                    z = step(z)
                continue
            if not recompute:
                z = stage(z)
                continue
            for block in checkpoint_units(stage):
                z = checkpoint(
                    _run_block,
                    block,
                    z,
                    is_spike_map(z),
                    use_reentrant=False,
                    context_fn=lambda b=block: _recompute_ctx(b),
                )
        return z

    def forward(self, x: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        if not self.spiking:
            return self.head(self.forward_features(x))
        with spikes_saved_as_bool():  # layers fed by spikes save them as 1 byte, not 4
            logits = self.head(self.forward_features(x))
        logits = logits.view(self._T, -1, logits.shape[-1])
        return logits if per_step else logits.mean(0)


def checkpoint_units(stage: nn.Module) -> list[nn.Module]:
    """The blocks of a stage: its children when each holds an activation, else the stage."""
    children = list(stage.children()) if isinstance(stage, nn.Sequential) else []
    activations = (FoldedNeuron, nn.ReLU)
    if children and all(any(isinstance(m, activations) for m in c.modules()) for c in children):
        return children
    return [stage]


def _run_block(block: nn.Module, z: torch.Tensor, spikes: bool) -> torch.Tensor:
    """``block(z)``. The recompute gets a copy of ``z`` without its spike tag, which is put
    back, so that the block runs as in the forward (a max-pool of spikes saves only its argmax)."""
    if spikes and not is_marked(z):
        mark_spikes(z)
    return block(z)


def _recompute_ctx(block: nn.Module) -> tuple[contextlib.AbstractContextManager, ...]:
    """``checkpoint``'s (forward, recompute) contexts: the recompute restores BN buffers."""
    return contextlib.nullcontext(), _buffers_restored(block)


@contextlib.contextmanager
def _buffers_restored(module: nn.Module) -> Iterator[None]:
    saved = [(b, b.clone()) for b in module.buffers()]
    try:
        yield
    finally:
        for buffer, value in saved:
            buffer.copy_(value)
