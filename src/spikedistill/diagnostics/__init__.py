"""Diagnostics of trained networks: firing rates, operations and energy, the report page."""

from .energy import ENERGY_PRESETS, OpCounter, OpsReport, count_ops, energy_constants
from .firing import FiringRates, firing_rates, mean_rate

__all__ = [
    "ENERGY_PRESETS",
    "FiringRates",
    "OpCounter",
    "OpsReport",
    "count_ops",
    "energy_constants",
    "firing_rates",
    "mean_rate",
]
