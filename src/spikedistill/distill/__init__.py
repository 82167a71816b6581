"""Distillation: frozen teacher, feature taps, the method registry and the methods."""

import importlib
import pkgutil

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

# every module of the package is imported, so a method registers itself by its file alone
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
