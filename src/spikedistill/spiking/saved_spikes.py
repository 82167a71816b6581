"""Spikes saved for backward as ``bool`` (1 byte instead of 4), firing rates as their counts.

A layer fed by spikes (a convolution, a linear layer, a max-pool) saves its input for the
backward pass. ``mark_spikes`` tags a neuron's output; inside ``spikes_saved_as_bool()`` autograd
packs a tagged tensor into ``bool`` when a layer saves it, and unpacks it to the float dtype
when backward needs it. A spike map used by several layers is packed once. Values are 0/1, so
nothing changes but the memory. Rate-BP's rate pass tags its firing rates (``mark_rates``) the
same way: they are saved as the spike counts they were computed from.
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
    setattr(x, _TAG, (bits, None, x._version))
    return x


def mark_rates(rates: torch.Tensor, counts: torch.Tensor, T: int) -> torch.Tensor:
    """Tag firing rates computed as ``counts.to(dtype).div_(T)``: saved as the integer
    ``counts`` (a byte per neuron) and rebuilt by the same two ops, so bit for bit."""
    setattr(rates, _TAG, (counts, T, rates._version))
    return rates


def _live_tag(x: torch.Tensor) -> tuple | None:
    """``x``'s tag, unless it is untagged or changed in place since."""
    tag = getattr(x, _TAG, None)
    return tag if tag is not None and tag[2] == x._version else None


def is_marked(x: torch.Tensor) -> bool:
    """Whether ``x`` is tagged by ``mark_spikes`` or ``mark_rates`` and unchanged since."""
    return _live_tag(x) is not None


def is_spike_map(x: torch.Tensor) -> bool:
    """Whether ``x`` is tagged by ``mark_spikes`` (not rates) and unchanged since."""
    tag = _live_tag(x)
    return tag is not None and tag[1] is None


class PackedSaved:
    """What autograd keeps of a tagged tensor: its ``bool`` bits (or spike counts), rebuilt as
    ``dtype`` (divided by ``divisor`` for rates) when backward needs it."""

    __slots__ = ("bits", "divisor", "dtype")

    def __init__(self, bits: torch.Tensor, dtype: torch.dtype, divisor: int | None) -> None:
        self.bits, self.dtype, self.divisor = bits, dtype, divisor

    def unpack(self) -> torch.Tensor:
        x = self.bits.to(self.dtype)
        return x if self.divisor is None else x.div_(self.divisor)


@contextlib.contextmanager
def spikes_saved_as_bool() -> Iterator[None]:
    """Within the context, tensors tagged by ``mark_spikes`` (``mark_rates``) are saved for
    backward as bool (as their spike counts)."""
    packed: dict[int, tuple[weakref.ref, PackedSaved]] = {}

    def pack(x: torch.Tensor):
        tag = _live_tag(x)
        if tag is None:
            return x
        hit = packed.get(id(x))
        if hit is not None and hit[0]() is x:
            return hit[1]
        bits, divisor, _ = tag
        item = PackedSaved(x.to(torch.bool) if bits is None else bits, x.dtype, divisor)
        packed[id(x)] = (weakref.ref(x), item)
        return item

    def unpack(item):
        return item.unpack() if isinstance(item, PackedSaved) else item

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield
