r"""Spike maps held 8 time steps per byte: what the Rate-BP spike pass passes between layers.

A layer's spikes over ``T`` steps, ``bool [T, rows, ...]``, take one byte per neuron and step.
Packed, they are ``uint8 [P, rows, ...]`` with ``P = ceil(T / 8)``: bit ``b`` of byte ``j`` is
the spike at step ``t = 8 j + b``. ``PackedSpikes`` carries such bytes where a folded ``bool
[T*rows, ...]`` tensor is expected: its shape, dtype and device are the bool tensor's. The
layers that know the type read the bytes (``ratebp``: convolutions a few steps at a time, a tiling
max-pool as the OR of bytes, flattening); any other op receives the unpacked ``bool`` tensor,
so code that does not know the type stays correct, and only spends the memory.
"""

from __future__ import annotations

import torch
from torch.utils._pytree import tree_map

BITS = 8


def packed_steps(T: int) -> int:
    """``P = ceil(T / 8)``: bytes per neuron for ``T`` steps."""
    return -(-T // BITS)


def pack(spikes: torch.Tensor) -> torch.Tensor:
    """``bool [T, ...]`` -> ``uint8 [P, ...]``."""
    T, P = spikes.shape[0], packed_steps(spikes.shape[0])
    bits = spikes.new_zeros((P * BITS, *spikes.shape[1:]), dtype=torch.uint8)
    bits[:T] = spikes
    weights = torch.tensor([1 << b for b in range(BITS)], dtype=torch.uint8, device=bits.device)
    bits = bits.view(P, BITS, -1).mul_(weights.view(1, BITS, 1))
    return bits.sum(1, dtype=torch.uint8).view(P, *spikes.shape[1:])


def unpack(packed: torch.Tensor, T: int) -> torch.Tensor:
    """``uint8 [P, ...]`` -> ``bool [T, ...]``."""
    shifts = torch.arange(BITS, dtype=torch.uint8, device=packed.device)
    bits = packed.unsqueeze(1) >> shifts.view(1, BITS, *([1] * (packed.dim() - 1)))
    return bits.bitwise_and_(1).view(-1, *packed.shape[1:])[:T].bool()


def step_bits(packed: torch.Tensor, t: int) -> torch.Tensor:
    """The spikes of step ``t`` as 0/1 bytes ``uint8 [rows, ...]``."""
    j, b = divmod(t, BITS)
    return torch.bitwise_right_shift(packed[j], b).bitwise_and_(1)


class PackedSpikes(torch.Tensor):
    """A folded ``bool [T*rows, ...]`` spike map whose data is ``packed`` (``uint8 [P, rows,
    ...]``, see the module doc). Ops that do not unwrap it get the unpacked ``bool`` tensor."""

    packed: torch.Tensor
    time_steps: int  # T (``Tensor.T`` is the transpose)

    @staticmethod
    def __new__(cls, packed: torch.Tensor, T: int) -> PackedSpikes:
        if packed.dtype != torch.uint8 or packed.shape[0] != packed_steps(T):
            got = f"{packed.dtype} {list(packed.shape)}"
            raise ValueError(
                f"packed spikes of T={T} are uint8 [{packed_steps(T)}, rows, ...], got {got}"
            )
        shape = (T * packed.shape[1], *packed.shape[2:])
        self = torch.Tensor._make_wrapper_subclass(
            cls, shape, dtype=torch.bool, device=packed.device
        )
        self.packed, self.time_steps = packed, T
        return self

    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for i, arg in enumerate(func._schema.arguments):
            value = args[i] if i < len(args) else kwargs.get(arg.name)
            writes = arg.alias_info is not None and arg.alias_info.is_write
            if writes and isinstance(value, PackedSpikes):  # it would write a temporary copy
                raise TypeError(f"{func} would modify packed spikes in place; copy them first")

        def plain(a):
            return a.unpacked() if isinstance(a, PackedSpikes) else a

        return func(*tree_map(plain, args), **tree_map(plain, kwargs))

    @property
    def rows(self) -> int:
        return self.packed.shape[1]

    def unpacked(self) -> torch.Tensor:
        """The plain ``bool [T*rows, ...]`` tensor."""
        return unpack(self.packed, self.time_steps).view(self.shape)

    def steps(self, start: int, stop: int, dtype: torch.dtype) -> torch.Tensor:
        """Steps ``start..stop-1`` as 0/1 ``dtype`` ``[(stop - start)*rows, ...]``."""
        out = torch.empty(
            ((stop - start) * self.rows, *self.shape[1:]), dtype=dtype, device=self.device
        )
        for i, t in enumerate(range(start, stop)):  # the copy converts to dtype
            out[i * self.rows : (i + 1) * self.rows].copy_(step_bits(self.packed, t))
        return out

    def map_bytes(self, fn) -> PackedSpikes:
        """``fn`` applied to the bytes as ``[P*rows, ...]``, for an op that acts on every row
        alone and commutes with a per-bit OR (a tiling max-pool, a flatten of dims >= 1)."""
        P, rows = self.packed.shape[:2]
        out = fn(self.packed.reshape(P * rows, *self.packed.shape[2:]))
        return PackedSpikes(out.reshape(P, rows, *out.shape[1:]), self.time_steps)
