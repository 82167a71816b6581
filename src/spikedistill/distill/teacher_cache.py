"""Teacher outputs (logits and tapped features) stored per dataset index on first sight.

Valid only when every sample's input is the same in every epoch (no augmentation) and the
teacher is deterministic (eval mode): from the second epoch on, the teacher's forward pass is
skipped. Not saved in checkpoints: a resumed run refills it. Memory: ``N x`` (classes + tapped
feature sizes) floats on the training device.
"""

from __future__ import annotations

import torch


class TeacherCache:
    def __init__(self, size: int) -> None:
        self.size = size
        self.filled: torch.Tensor | None = None
        self.store: dict[str, torch.Tensor] = {}

    def missing(self, index: torch.Tensor) -> torch.Tensor:
        """Bool mask ``[B]``: which samples of ``index`` are not stored yet."""
        if self.filled is None:
            return torch.ones(len(index), dtype=torch.bool)
        return ~self.filled[index.to(self.filled.device)].cpu()

    def get(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The stored outputs of samples ``index [B]`` (all of them must be stored)."""
        index = index.to(self.filled.device)
        return {name: values[index] for name, values in self.store.items()}

    def put(self, index: torch.Tensor, outputs: dict[str, torch.Tensor]) -> None:
        if self.filled is None:
            device = next(iter(outputs.values())).device
            self.filled = torch.zeros(self.size, dtype=torch.bool, device=device)
            self.store = {
                name: torch.zeros(self.size, *v.shape[1:], dtype=v.dtype, device=device)
                for name, v in outputs.items()
            }
        index = index.to(self.filled.device)
        for name, values in outputs.items():
            self.store[name][index] = values.detach()
        self.filled[index] = True

    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for v in self.store.values())
