"""SpikingJelly interop: the ``LIFNode`` with the same dynamics as a ``NeuronConfig``, and
``as_student`` (a SpikingJelly net as a distillation student).

Requires the optional ``spikingjelly`` package (``pip install spikedistill[spikingjelly]``).
SpikingJelly neurons keep state between calls: call ``reset(model)`` after every batch
(``as_student``'s wrapper resets them before every forward).
"""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from ..models.adapter import SpikingStudent
from ..spiking import FoldedNeuron, NeuronConfig


def _import():
    try:
        from spikingjelly.activation_based import functional, neuron, surrogate
    except ImportError as err:
        raise ConfigError(
            f"SpikingJelly is not importable ({err}); install it with "
            "`pip install spikingjelly loguru` (or `--no-deps` plus loguru)"
        ) from err
    return functional, neuron, surrogate


SURROGATE_CLASSES = {
    "triangle": "PiecewiseQuadratic",
    "sigmoid": "Sigmoid",
    "atan": "ATan",
    "rectangle": "Rect",
}


def spikingjelly_lif(cfg: NeuronConfig) -> nn.Module:
    """A multi-step SpikingJelly ``LIFNode`` (``IFNode`` for decay 1) equal to ``cfg``."""
    _, neuron, surrogate = _import()
    surrogate_fn = getattr(surrogate, SURROGATE_CLASSES[cfg.surrogate])(alpha=cfg.alpha)
    common = dict(
        v_threshold=cfg.threshold,
        v_reset=0.0 if cfg.reset == "hard" else None,
        surrogate_function=surrogate_fn,
        detach_reset=cfg.detach_reset,
        step_mode="m",
    )
    if cfg.decay == 1.0:
        return neuron.IFNode(**common)
    if cfg.decay == 0.0:
        raise ConfigError("SpikingJelly's LIFNode cannot express decay 0 (tau = 1)")
    return neuron.LIFNode(tau=1.0 / (1.0 - cfg.decay), decay_input=cfg.decay_input, **common)


def use_spikingjelly_neurons(model: nn.Module) -> nn.Module:
    """Swap every folded neuron of a zoo SNN for its SpikingJelly twin (in place)."""
    for module in model.modules():
        if isinstance(module, FoldedNeuron):
            module.neuron = spikingjelly_lif(module.neuron.config)
    return model


#: SpikingJelly's name of each neuron class that ``spikingjelly_lif`` builds
NEURON_TYPES = {"LIFNode": "lif", "IFNode": "if"}


def implementation(model: nn.Module, device: str) -> str:
    """The implementation SpikingJelly runs the model's neurons on, as it reports it
    (``functional.neuron_implementation``: e.g. ``triton`` or ``cuda`` on a GPU,
    ``torch-reference`` on CPUs); ``unknown`` for a SpikingJelly without that query."""
    functional, _, _ = _import()
    query = getattr(functional, "neuron_implementation", None)
    kinds = {
        NEURON_TYPES[type(m).__name__] for m in model.modules() if type(m).__name__ in NEURON_TYPES
    }
    if query is None or not kinds:
        return "unknown"
    import torch

    names = {query(kind, torch.device(device))["implementation"] for kind in sorted(kinds)}
    return "+".join(sorted(names))


def reset(model: nn.Module) -> None:
    """Reset SpikingJelly neuron states (our own neurons need no reset)."""
    functional, _, _ = _import()
    functional.reset_net(model)


def as_student(net: nn.Module, T: int, **options) -> SpikingStudent:
    """``net`` switched to multi-step mode (``functional.set_step_mode(net, "m")``) and wrapped
    as a student: ``SpikingStudent(net, T, **options)`` (``stage_names``, ``per_step_output``,
    ...; its features are ``[T, B, ...]``, ``feature_layout="time_first"``)."""
    functional, _, _ = _import()
    functional.set_step_mode(net, "m")
    return SpikingStudent(net, T, **options)
