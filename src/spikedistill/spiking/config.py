"""Neuron constants (``NeuronConfig``) and the named presets of docs/methods.md §1 and §6."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, UnknownNameError
from ..registry import Registry
from ..typed import check_options
from .surrogate import SURROGATES


@dataclass(frozen=True)
class NeuronConfig:
    r"""Constants of a multi-step LIF neuron (IF is ``decay=1``).

    Per step ``t`` with input ``x_t`` and post-reset membrane ``u_{t-1}`` (``u_0 = 0``):

    - charge: ``v_t = decay * u_{t-1} + c * x_t`` with ``c = 1 - decay`` if ``decay_input`` else 1;
    - fire:   ``s_t = 1[v_t >= threshold]``;
    - reset:  ``u_t = v_t * (1 - s_t)`` (``hard``, to 0) or ``u_t = v_t - threshold * s_t``
      (``soft``); with ``detach_reset`` the reset term carries no gradient.

    ``decay`` is SpikingJelly's ``1 - 1/tau``; the surrogate (see ``surrogate.py``) replaces
    ``ds/dv`` in the backward pass.
    """

    decay: float = 0.5
    threshold: float = 1.0
    reset: str = "hard"
    detach_reset: bool = False
    decay_input: bool = False
    surrogate: str = "triangle"
    alpha: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay <= 1.0:
            raise ConfigError(f"neuron decay must lie in [0, 1], got {self.decay}")
        if not self.threshold > 0.0:
            raise ConfigError(f"neuron threshold must be > 0, got {self.threshold}")
        if self.reset not in ("hard", "soft"):
            raise ConfigError(f"neuron reset must be 'hard' or 'soft', got {self.reset!r}")
        if self.surrogate not in SURROGATES:
            raise ConfigError(SURROGATES.unknown_message(self.surrogate))
        if not self.alpha > 0.0:
            raise ConfigError(f"surrogate alpha must be > 0, got {self.alpha}")

    def replace(self, **changes: Any) -> NeuronConfig:
        return dataclasses.replace(self, **changes)


NEURON_PRESETS: Registry[NeuronConfig] = Registry("neuron preset")
NEURON_PRESETS.register("tdbn")(NeuronConfig())  # SASTC, CKDSNN (docs/methods.md §1.1)
NEURON_PRESETS.register("ratebp")(  # Rate-BP, BRD (docs/methods.md §1.2)
    NeuronConfig(decay=0.2, reset="soft", detach_reset=True, surrogate="sigmoid", alpha=4.0)
)
NEURON_PRESETS.register("if")(NeuronConfig(decay=1.0, reset="soft", detach_reset=True))


#: other libraries' neuron parameters, and what they are here
OTHER_NAMES = {
    "tau": "decay = 1 - 1/tau (SpikingJelly's tau; decay_input: true for its LIFNode)",
    "beta": "decay = beta (snnTorch's beta)",
    "v_threshold": "threshold",
    "v_reset": "reset: hard (to 0) or soft (subtract the threshold)",
    "reset_mechanism": "reset: hard (snnTorch's 'zero') or soft ('subtract')",
    "surrogate_function": "surrogate (a name) and alpha",
}


def neuron_option_types() -> dict[str, Any]:
    """The fields of ``NeuronConfig`` with their types: what ``neuron_kwargs`` may set."""
    return typing.get_type_hints(NeuronConfig)


def check_neuron_kwargs(options: Any, path: str = "neuron_kwargs") -> dict[str, Any]:
    """``options`` checked as ``NeuronConfig`` field overrides; another library's parameter
    name is told what it is here."""
    for key in OTHER_NAMES.keys() & (options.keys() if isinstance(options, dict) else set()):
        raise ConfigError(f"{path}.{key}: spikedistill's neuron takes {OTHER_NAMES[key]}")
    return check_options(options, neuron_option_types(), path, "the neuron")


def named_preset(name: str) -> NeuronConfig:
    """The preset ``name``; an unknown name lists what each preset is."""
    if name in NEURON_PRESETS:
        return NEURON_PRESETS.get(name)
    each = {n: NEURON_PRESETS.get(n) for n in NEURON_PRESETS}
    kinds = [f"{n} (decay {c.decay:g}, {c.reset} reset)" for n, c in each.items()]
    raise UnknownNameError(
        f"{NEURON_PRESETS.unknown_message(name)}. The presets: {'; '.join(kinds)}; "
        "neuron_kwargs change any constant"
    )


def neuron_config(preset: str | NeuronConfig | None = "tdbn", **overrides: Any) -> NeuronConfig:
    """A ``NeuronConfig`` from a preset name (or config) with field overrides."""
    base = preset if isinstance(preset, NeuronConfig) else named_preset(preset or "tdbn")
    overrides = check_neuron_kwargs(overrides)
    return base.replace(**overrides) if overrides else base
