"""Which sample indices a rank sees in an epoch: shuffling and DDP-style sharding."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError
from .seeding import make_generator


def epoch_order(n: int, *, shuffle: bool, seed: int, epoch: int) -> Tensor:
    """``arange(n)``, or its permutation seeded from ``(seed, epoch)`` when ``shuffle``."""
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=make_generator(seed, "shuffle", epoch))


def shard(order: Tensor, rank: int, world_size: int, *, pad: bool) -> Tensor:
    """Rank ``rank``'s share of ``order``: every ``world_size``-th element from ``rank``.

    ``pad=True`` (training) first repeats ``order`` from its start until its length is a multiple
    of ``world_size``, so all shards have the same size (as ``DistributedSampler`` does);
    ``pad=False`` (evaluation) covers every element exactly once, shard sizes differing by one.
    """
    check_rank(rank, world_size)
    if pad and len(order) and len(order) % world_size:
        total = -(-len(order) // world_size) * world_size
        reps = -(-total // len(order))
        order = order.repeat(reps)[:total]
    return order[rank::world_size]


def check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")


def epoch_indices(
    n: int, *, train: bool, seed: int, epoch: int, rank: int = 0, world_size: int = 1
) -> Tensor:
    """The sample indices rank ``rank`` visits in ``epoch``, in order."""
    return shard(epoch_order(n, shuffle=train, seed=seed, epoch=epoch), rank, world_size, pad=train)
