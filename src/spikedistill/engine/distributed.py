"""Multi-process training under ``torchrun``: who am I, which device, and summing over ranks.

``torchrun --nproc_per_node=N [--nnodes=M ...] -m spikedistill.cli train CONFIG`` starts one
process per device with ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and the rendezvous address in
the environment; ``DistContext.from_env`` joins the process group (``nccl`` on GPUs, ``gloo`` on
CPUs). Without those variables everything runs as a single process (``world_size == 1``) and
no collective is ever called.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import ConfigError


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return default if value is None else int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes checkpoints."""
        return self.rank == 0

    @classmethod
    def describe_env(cls) -> DistContext:
        """Rank and world size from torchrun's variables (checked), without joining anything;
        ``WORLD_SIZE`` unset or 1: one process, whatever ``RANK`` says."""
        world_size = _env_int("WORLD_SIZE", 1)
        if world_size <= 1:
            return cls()
        for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
            if name not in os.environ:
                raise ConfigError(
                    f"WORLD_SIZE={world_size} but {name} is not set: start multi-process runs "
                    "with torchrun (or unset WORLD_SIZE)"
                )
        rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
        if not 0 <= rank < world_size:
            raise ConfigError(f"RANK={rank} is not in [0, WORLD_SIZE={world_size})")
        return cls(rank, local, world_size)

    @classmethod
    def from_env(cls, device: torch.device) -> DistContext:
        """The context ``torchrun`` describes (joining its process group), else one process."""
        ctx = cls.describe_env()
        if ctx.enabled and not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(ctx.local_rank)
            dist.init_process_group(backend)
        return ctx

    def device(self, device: torch.device) -> torch.device:
        """This rank's device: ``cuda:LOCAL_RANK`` on GPUs."""
        if self.enabled and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def per_rank_batch(self, batch_size: int) -> int:
        """``data.batch_size`` is the global batch; each rank takes an equal share."""
        if batch_size % self.world_size:
            raise ConfigError(
                f"data.batch_size={batch_size} does not split over {self.world_size} processes; "
                f"use a multiple of {self.world_size}"
            )
        return batch_size // self.world_size

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """``values`` summed over all ranks (float64; unchanged on a single process)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
