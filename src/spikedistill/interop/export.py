"""``export_model``: a trained model written in another format, chosen by name (``EXPORTERS``).

- ``nir``: the SNN's per-step graph for neuromorphic tools (``nir_export``);
- ``onnx``: the whole forward, ANN or SNN, with a dynamic batch dimension (``onnx_export``).

A format is an ``Exporter``: its writer and the options it takes. The file is written to a
temporary name beside ``out`` and renamed into place, once the export is built in memory: a
model that cannot export, or a failed write, leaves nothing behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import ConfigError
from ..files import replaced_atomically
from ..registry import Registry
from .nir_export import build_nir, save_nir
from .onnx_export import export_program, save_onnx


@dataclass(frozen=True)
class Exporter:
    """``build(model, sample_shape, **options)`` makes the exported object in memory (where
    a model that cannot export fails); ``save(obj, path)`` writes it and returns a summary
    line. ``options``: the keyword options ``build`` takes."""

    build: Callable[..., Any]
    save: Callable[[Any, Path], str]
    options: tuple[str, ...] = ()


EXPORTERS: Registry[Exporter] = Registry("export format")
EXPORTERS.register("nir")(Exporter(build_nir, save_nir, ("dt",)))
EXPORTERS.register("onnx")(Exporter(export_program, save_onnx))


def sample_shape_of(model: nn.Module) -> tuple[int, ...]:
    """A sample's shape from the model's ``data_info`` (set by ``engine.load.load_model``):
    ``(C, H, W)``, or ``(T, C, H, W)`` for event frames."""
    info = getattr(model, "data_info", None)
    if info is None:
        raise ConfigError(
            "the model has no data_info: give one sample's shape (--input-shape C,H,W, or "
            "sample_shape=(C, H, W) in Python)"
        )
    image = (info.in_channels, *info.image_size)
    return (info.time_steps, *image) if info.time_steps else image


def check_sample_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` as ints: ``C, H, W`` or ``T, C, H, W``, each >= 1."""
    dims = tuple(shape)
    if len(dims) not in (3, 4) or not all(isinstance(d, int) and d >= 1 for d in dims):
        raise ConfigError(f"input shape must be C,H,W or T,C,H,W of integers >= 1, got {dims}")
    return dims


def check_options(fmt: str, options: dict[str, Any]) -> Exporter:
    """The exporter of ``fmt`` (``UnknownNameError`` if none), refusing options it lacks."""
    exporter = EXPORTERS.get(fmt)
    extra = sorted(set(options) - set(exporter.options))
    if extra:
        takes = ", ".join(exporter.options) or "none"
        raise ConfigError(f"{fmt} export takes no option {', '.join(extra)} (its options: {takes})")
    return exporter


def export_model(
    model: nn.Module,
    fmt: str,
    out: str | os.PathLike,
    sample_shape: tuple[int, ...] | None = None,
    **options: Any,
) -> str:
    """Write ``model`` (put in eval mode) as ``fmt`` to ``out`` (its folder created if
    needed); returns a one-line summary. ``sample_shape``: one sample's shape (default: from
    ``model.data_info``)."""
    exporter = check_options(fmt, options)
    for folder in (Path(out).parent, *Path(out).parent.parents):
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"cannot write {out}: {folder} is not a folder")
    shape = check_sample_shape(sample_shape or sample_shape_of(model))
    exported = exporter.build(model.eval(), shape, **options)
    with replaced_atomically(out) as tmp:
        summary = exporter.save(exported, tmp)
    return summary
