r"""Event streams to frames: ``T`` frames ``[T, 2, H, W]`` of per-polarity event counts.

The stream (``N`` events, time-sorted) is cut into ``T`` segments ``[j_l, j_r)``:

- ``split_by="number"``: ``j_l = floor(N / T) * j`` and ``j_r = floor(N / T) * (j + 1)``
  (the last segment ends at ``N``);
- ``split_by="time"``: with ``dt = floor((t_{N-1} - t_0) / T)``, segment ``j`` holds the events
  with ``t_0 + j dt <= t < t_0 + (j + 1) dt`` (the last one everything from ``t_0 + j dt``).

Frame ``j`` channel ``c`` counts the events of polarity ``c`` at each pixel ``(y, x)``. These
are SpikingJelly's definitions (``integrate_events_by_fixed_frames_number``); the tests check
that both give the same frames.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .aedat import Events

SPLITS = ("number", "time")


def segment_bounds(t: np.ndarray, frames: int, split_by: str) -> tuple[np.ndarray, np.ndarray]:
    """``(j_l, j_r)``: index ranges of the ``frames`` segments of the time-sorted ``t``."""
    if frames < 1:
        raise ConfigError(f"the number of frames must be >= 1, got {frames}")
    n = len(t)
    j = np.arange(frames)
    if split_by == "number":
        step = n // frames
        left, right = step * j, step * (j + 1)
    elif split_by == "time":
        if n == 0:
            return np.zeros(frames, np.int64), np.zeros(frames, np.int64)
        dt = (int(t[-1]) - int(t[0])) // frames
        starts = int(t[0]) + dt * j
        left = np.searchsorted(t, starts, side="left")
        right = np.searchsorted(t, starts + dt, side="left")
    else:
        raise ConfigError(f"split_by must be one of {SPLITS}, got {split_by!r}")
    right[-1] = n
    return left.astype(np.int64), right.astype(np.int64)


def integrate_frames(
    events: Events, frames: int, size: tuple[int, int], split_by: str = "number"
) -> np.ndarray:
    """``float32 [frames, 2, H, W]`` event counts of ``events`` on an ``H x W`` sensor."""
    height, width = size
    x, y, p = (events[k].astype(np.int64) for k in ("x", "y", "p"))
    outside = (x < 0) | (x >= width) | (y < 0) | (y >= height) | (p < 0) | (p > 1)
    if outside.any():
        raise ConfigError(f"events outside a {height}x{width} sensor with 2 polarities")
    left, right = segment_bounds(events["t"], frames, split_by)
    flat = (p * height + y) * width + x  # index into [2, H, W]
    out = np.zeros((frames, 2 * height * width), np.float32)
    for j in range(frames):
        out[j] = np.bincount(flat[left[j] : right[j]], minlength=2 * height * width)
    return out.reshape(frames, 2, height, width)
