"""Layers run on spikes that Rate-BP's spike pass holds packed 8 steps per byte
(``spiking.kernels.spike_pack``): a tiling max-pool as the OR of the bytes, and any other layer
a few time steps at a time on a float copy of those steps."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..spiking.kernels.spike_pack import PackedSpikes, unpack

FRESH = "_ratebp_fresh"  # marks a spike-pass tensor that only its consumer holds


def or_pool(x: torch.Tensor, k: int) -> torch.Tensor:
    """Max-pool of spikes over tiling ``k x k`` windows, ``x [N, C, H, W]`` ``bool`` or packed
    bytes (``uint8``, bit ``b`` = step ``b``): the bitwise OR of the ``k^2`` strided sub-grids
    (several times faster than a max-pool on bytes). For ``k = 2`` on even sizes, the two bytes
    of a window row are one ``int16``: one OR of the row pairs, then of each word's two bytes."""
    oh, ow = x.shape[-2] // k, x.shape[-1] // k
    if k == 2 and x.is_contiguous() and x.shape[-2] == 2 * oh and x.shape[-1] == 2 * ow:
        pairs = x.view(torch.uint8).view(-1, 2, 2 * ow).view(torch.int16)  # [rows/2, 2, ow]
        words = torch.bitwise_or(pairs[:, 0], pairs[:, 1])
        out = words.bitwise_or_(words >> 8).bitwise_and_(0xFF).to(torch.uint8)
        return out.view(x.dtype).view(*x.shape[:-2], oh, ow)
    out = None
    for i in range(k):
        for j in range(k):
            part = x[..., i : i + k * oh : k, j : j + k * ow : k]
            out = part.clone() if out is None else out.bitwise_or_(part)
    return out


def steps_of(x: torch.Tensor, start: int, stop: int, T: int, dtype: torch.dtype) -> torch.Tensor:
    """Steps ``start..stop-1`` of spikes ``x [T*rows, ...]`` (bool or packed) as ``dtype``."""
    if isinstance(x, PackedSpikes):
        return x.steps(start, stop, dtype)
    rows = x.shape[0] // T
    return x[start * rows : stop * rows].to(dtype)


def channels_of(x: torch.Tensor, sl: slice) -> torch.Tensor:
    """Channels ``sl`` of ``x [N, C, ...]``; packed spikes are unpacked to ``bool`` for them."""
    if isinstance(x, PackedSpikes):
        return unpack(x.packed[:, :, sl], x.time_steps).flatten(0, 1)
    return x[:, sl]


def per_step(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, T: int, dtype):
    """``fn`` applied to each time step of folded spikes ``[T*B, ...]`` (bool or packed) as
    ``dtype``, into one output."""
    rows = x.shape[0] // T
    out = None
    for t in range(T):
        y = fn(steps_of(x, t, t + 1, T, dtype))
        if out is None:
            out = y.new_empty((x.shape[0], *y.shape[1:]))
        out[t * rows : (t + 1) * rows] = y
    return out
