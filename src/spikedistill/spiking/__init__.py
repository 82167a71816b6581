"""The SNN substrate: neurons, surrogates, time-distributed layers and encoders; their kernels
are in ``spiking.kernels``."""

from .config import NEURON_PRESETS, NeuronConfig, neuron_config
from .encoding import direct_encode, mean_readout, repeat_folded, time_first
from .fusion import FusedSequential, fuse_units, unfused_norms
from .kernels import LIF_BACKENDS, choose_backend
from .layers import FoldedNeuron, TimeBatchNorm2d, TimeDistributed, fold_time, unfold_time
from .neuron import IF, LIF, lif_multistep, set_backend
from .norm_lif import conv_norm_act, norm_act
from .surrogate import SURROGATES, surrogate_derivative

__all__ = [
    "IF",
    "LIF",
    "LIF_BACKENDS",
    "NEURON_PRESETS",
    "SURROGATES",
    "FoldedNeuron",
    "FusedSequential",
    "NeuronConfig",
    "TimeBatchNorm2d",
    "TimeDistributed",
    "choose_backend",
    "conv_norm_act",
    "direct_encode",
    "fold_time",
    "fuse_units",
    "lif_multistep",
    "mean_readout",
    "neuron_config",
    "norm_act",
    "repeat_folded",
    "set_backend",
    "surrogate_derivative",
    "time_first",
    "unfold_time",
    "unfused_norms",
]
