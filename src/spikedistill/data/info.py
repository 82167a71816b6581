"""``DatasetInfo``: what a model and a loader need to know about a dataset."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset.

    ``mean``/``std`` are per channel, for inputs scaled to [0, 1]; the loader normalises with them.
    ``time_steps``: samples are ``time_steps`` event frames ``[T, C, H, W]`` (batched time-first,
    ``[T, B, C, H, W]``); ``None`` for images.
    """

    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    time_steps: int | None = None

    def __post_init__(self) -> None:
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ConfigError(
                f"mean {self.mean} and std {self.std} need one value per channel "
                f"({self.in_channels} channels)"
            )
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"std must be positive, got {self.std}")
        if any(not 0 <= m <= 1 for m in self.mean) or any(s > 1 for s in self.std):
            raise ConfigError(
                f"mean {self.mean} and std {self.std} are for inputs scaled to [0, 1] (uint8 "
                "images are divided by 255 first): in 0-255 units? divide them by 255"
            )
