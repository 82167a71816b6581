"""The SNN substrate: neurons, surrogates, time-distributed layers and encoders."""

from .backends import LIF_BACKENDS, neuron_backend, use_backend
from .config import NEURON_PRESETS, NeuronConfig, neuron_config
from .encoding import direct_encode, mean_readout, repeat_folded, time_first
from .layers import FoldedNeuron, TimeBatchNorm2d, TimeDistributed, fold_time, unfold_time
from .neuron import IF, LIF, lif_multistep
from .surrogate import SURROGATES, surrogate_derivative

__all__ = [
    "IF",
    "LIF",
    "LIF_BACKENDS",
    "NEURON_PRESETS",
    "SURROGATES",
    "FoldedNeuron",
    "NeuronConfig",
    "TimeBatchNorm2d",
    "TimeDistributed",
    "direct_encode",
    "fold_time",
    "lif_multistep",
    "mean_readout",
    "neuron_backend",
    "neuron_config",
    "repeat_folded",
    "surrogate_derivative",
    "time_first",
    "unfold_time",
    "use_backend",
]
