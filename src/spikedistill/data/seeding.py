"""Seeds derived from (seed, purpose, epoch, ...) so no result depends on global RNG state."""

from __future__ import annotations

import zlib

import numpy as np
import torch

_MASK63 = (1 << 63) - 1


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed mixing ``parts`` (integers and short purpose tags) with numpy's SeedSequence.

    Different parts give statistically independent streams, e.g.
    ``derive_seed(seed, "shuffle", epoch)`` vs ``derive_seed(seed, "augment", epoch, batch)``.
    """
    entropy = [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) % (1 << 64) for p in parts]
    hi, lo = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
    return ((int(hi) << 32) | int(lo)) & _MASK63


def make_generator(*parts: int | str) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``derive_seed(*parts)``."""
    return torch.Generator().manual_seed(derive_seed(*parts))
