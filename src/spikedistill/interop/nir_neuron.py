r"""A spikedistill LIF as a NIR neuron node (``nir_export``).

spikedistill's step is ``v_t = decay u_{t-1} + k x_t`` (``k = 1 - decay``
with ``decay_input``, else 1), ``s_t = [v_t >= threshold]``, ``u_t = 0`` where it fired. NIR's
LIF is ``tau dv/dt = (v_leak - v) + r I``; its forward-Euler step of length ``dt`` (snnTorch's
importer: ``beta = 1 - dt / tau``, input scaled by ``r dt / tau``) is
``v_t = (1 - dt/tau) v_{t-1} + (r dt / tau) I_t``. So, with ``dt`` the graph's time step::

    tau = dt / (1 - decay),   r = k / (1 - decay),   v_leak = 0,   v_reset = 0,
    v_threshold = threshold

and for ``decay = 1`` NIR's ``IF`` (``dv/dt = r I``): ``r = k / dt``. ``dt`` defaults to 1e-4,
the step snnTorch's importer assumes; it is stored in the graph's metadata.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from ..spiking import NeuronConfig

DEFAULT_DT = 1e-4  # snnTorch's import_nir discretises NIR's LIF with this step


def import_nir() -> Any:
    try:
        import nir
    except ImportError as err:
        raise ConfigError(
            f"NIR export needs the 'nir' package ({err}); pip install 'spikedistill[export]'"
        ) from None
    return nir


def neuron_node(cfg: NeuronConfig, shape: tuple[int, ...], dt: float, path: str) -> Any:
    """The NIR ``LIF`` (``IF`` for ``decay = 1``) of ``cfg`` for neurons of ``shape``, under
    forward Euler with step ``dt`` (see the module docstring)."""
    if cfg.reset != "hard":
        raise ConfigError(
            f"cannot export layer {path} to NIR: its neurons reset by subtraction (soft reset), "
            "which NIR's LIF and IF cannot express (they reset to v_reset)"
        )
    nir = import_nir()
    k = 1.0 - cfg.decay if cfg.decay_input else 1.0

    def full(v: float) -> np.ndarray:
        return np.full(shape, v, dtype=np.float64)

    threshold, zero = full(cfg.threshold), full(0.0)
    if cfg.decay == 1.0:
        return nir.IF(r=full(k / dt), v_threshold=threshold, v_reset=zero)
    leak = 1.0 - cfg.decay
    return nir.LIF(
        tau=full(dt / leak), r=full(k / leak), v_leak=zero, v_threshold=threshold, v_reset=zero
    )
