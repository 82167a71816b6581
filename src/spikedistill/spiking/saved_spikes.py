"""Spikes saved for backward as ``bool`` (1 byte instead of 4).

A layer fed by spikes (a convolution, a linear layer, a max-pool) saves its input for the
backward pass. ``mark_spikes`` tags a neuron's output; inside ``spikes_saved_as_bool()`` autograd
packs a tagged tensor into ``bool`` when a layer saves it, and unpacks it to the float dtype
when backward needs it. A spike map used by several layers is packed once. Values are 0/1, so
nothing changes but the memory.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator

import torch

_TAG = "_spikedistill_spikes"


def mark_spikes(x: torch.Tensor, bits: torch.Tensor | None = None) -> torch.Tensor:
    """Tag ``x`` (0/1 values) as spikes; returns ``x``. ``bits``: ``x`` as ``bool`` when the
    caller already has it (it is then saved instead of a new conversion)."""
    setattr(x, _TAG, True if bits is None else bits)
    return x


class _Packed:
    __slots__ = ("bits", "dtype")

    def __init__(self, bits: torch.Tensor, dtype: torch.dtype) -> None:
        self.bits, self.dtype = bits, dtype


@contextlib.contextmanager
def spikes_saved_as_bool() -> Iterator[None]:
    """Within the context, tensors tagged by ``mark_spikes`` are saved for backward as bool."""
    packed: dict[int, tuple[weakref.ref, _Packed]] = {}

    def pack(x: torch.Tensor):
        tag = getattr(x, _TAG, None)
        if tag is None:
            return x
        hit = packed.get(id(x))
        if hit is not None and hit[0]() is x:
            return hit[1]
        item = _Packed(tag if isinstance(tag, torch.Tensor) else x.to(torch.bool), x.dtype)
        packed[id(x)] = (weakref.ref(x), item)
        return item

    def unpack(item):
        return item.bits.to(item.dtype) if isinstance(item, _Packed) else item

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield
