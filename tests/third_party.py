"""Third-party model code for the tests: torchvision (and timm, which imports it).

PyPI's torchvision wheel is built against PyPI's CUDA build of torch. Beside a CPU build of
torch (``torch==2.13.0+cpu`` here) its C extension cannot load, and ``import torchvision``
fails while registering fake kernels for its detection ops ("operator torchvision::nms does not
exist"). ``import_torchvision`` then declares those ops' schemas (no kernels: calling one would
fail) so that the pure-Python model code imports as it is. Where the extension loads (a
matching torch), nothing is declared.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch

#: torchvision's C++ op schemas (torchvision/csrc/ops/*.cpp), declared only when its extension
#: cannot load
_SCHEMAS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "roi_align": "(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor",
    "_roi_align_backward": "(Tensor grad, Tensor rois, float spatial_scale, "
    "SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, "
    "SymInt height, SymInt width, int sampling_ratio, bool aligned) -> Tensor",
    "ps_roi_align": "(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, int sampling_ratio) -> (Tensor, Tensor)",
    "_ps_roi_align_backward": "(Tensor grad, Tensor rois, Tensor channel_mapping, "
    "float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, "
    "SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "roi_pool": "(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width) -> (Tensor, Tensor)",
    "_roi_pool_backward": "(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, "
    "SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, "
    "SymInt height, SymInt width) -> Tensor",
    "ps_roi_pool": "(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width) -> (Tensor, Tensor)",
    "_ps_roi_pool_backward": "(Tensor grad, Tensor rois, Tensor channel_mapping, "
    "float spatial_scale, SymInt pooled_height, SymInt pooled_width, SymInt batch_size, "
    "SymInt channels, SymInt height, SymInt width) -> Tensor",
    "deform_conv2d": "(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, "
    "SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, "
    "SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> Tensor",
    "_deform_conv2d_backward": "(Tensor grad, Tensor input, Tensor weight, Tensor offset, "
    "Tensor mask, Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, "
    "SymInt dilation_h, SymInt dilation_w, SymInt groups, SymInt offset_groups, "
    "bool use_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
}
_declared: list[torch.library.Library] = []  # kept alive: a dropped Library undoes its defs


def _extension_loads(spec) -> bool:
    library = Path(spec.origin).with_name("_C.so")
    if not library.exists():
        return False
    try:
        torch.ops.load_library(str(library))
    except OSError:
        return False
    return True


def make_torchvision_importable() -> bool:
    """Declare torchvision's op schemas if its extension cannot load (conftest.py calls this
    first: SpikingJelly imports torchvision too); whether torchvision is installed."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:  # None: a folder left behind by an uninstall
        return False
    if not _declared and not _extension_loads(spec):
        library = torch.library.Library("torchvision", "DEF")
        for name, schema in _SCHEMAS.items():
            library.define(name + schema)
        _declared.append(library)
    return True


def import_torchvision() -> ModuleType:
    """``torchvision``, or skip the test when it is not installed."""
    if not make_torchvision_importable():
        pytest.skip("torchvision is not installed")
    import torchvision

    return torchvision


def import_timm() -> ModuleType:
    """``timm`` (it imports torchvision), or skip the test when it is not installed."""
    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm is not installed")
    import_torchvision()
    import timm

    return timm
