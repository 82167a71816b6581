"""Metrics: the STM score (spatio-temporal mismatch of batch similarities)."""

from .stm import layerwise_pairs, sastc_pairs, similarity, stm_score

__all__ = ["layerwise_pairs", "sastc_pairs", "similarity", "stm_score"]
