"""Benchmarks: side-by-side timing, peak step memory and the ``spikedistill bench`` suite."""

from .timing import emit_table, interleaved_medians, train_step
from .variants import VARIANTS, BenchSpec

__all__ = ["VARIANTS", "BenchSpec", "emit_table", "interleaved_medians", "train_step"]
