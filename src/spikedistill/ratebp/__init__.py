"""Rate-based backpropagation (Rate-BP, docs/methods.md §4): a spiking model trained through a
T-free rate graph (``view.RateBackprop``)."""

from .view import STORED_STEPS, RateBackprop, scale_gradient

__all__ = ["STORED_STEPS", "RateBackprop", "scale_gradient"]
