"""Distillation: frozen teacher, feature taps, the method registry and the methods."""

from . import brd, fitnet, kd, nld, samd, sastc  # noqa: F401  (register the methods)
from .base import METHODS, DistillBatch, DistillMethod, register_method
from .objective import DistillObjective, parse_methods
from .taps import FeatureTaps, feature_map_path, resolve_tap, resolve_taps
from .teacher import FrozenTeacher, load_teacher

__all__ = [
    "METHODS",
    "DistillBatch",
    "DistillMethod",
    "DistillObjective",
    "FeatureTaps",
    "FrozenTeacher",
    "feature_map_path",
    "load_teacher",
    "parse_methods",
    "register_method",
    "resolve_tap",
    "resolve_taps",
]
