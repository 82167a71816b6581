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
    def from_env(cls, device: torch.device) -> DistContext:
        """The context ``torchrun`` describes (joining its process group), else one process."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        ctx = cls(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world_size)
        if not dist.is_initialized():
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
