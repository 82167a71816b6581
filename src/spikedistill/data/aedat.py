"""Readers of the official event files of CIFAR10-DVS and DVS128 Gesture (no per-event Python).

Both return ``Events``: a dict of equal-length numpy arrays ``t`` (int64, microseconds), ``x``,
``y`` (int16 pixel coordinates) and ``p`` (int8 polarity 0/1), in file order.

- DVS128 Gesture ships **AEDAT 3.1**: ASCII header lines starting with ``#`` up to
  ``#!END-HEADER``, then packets. A packet is a 28-byte little-endian header (``int16`` event
  type, ``int16`` source, ``int32`` event size, ``int32`` timestamp offset, ``int32`` timestamp
  overflow, ``int32`` capacity, ``int32`` number, ``int32`` valid) and ``capacity * size`` bytes.
  Polarity events (type 1) are ``uint32 data, uint32 timestamp``: ``x = data >> 17 & 0x7FFF``,
  ``y = data >> 2 & 0x7FFF``, ``p = data >> 1 & 1``, time ``timestamp | overflow << 31``.
- CIFAR10-DVS (figshare release) ships jAER **AEDAT 2** files: ``#`` header lines, then
  big-endian ``uint32 address, uint32 timestamp`` pairs with ``x = address >> 1 & 0x7F``,
  ``y = address >> 8 & 0x7F``, ``p = address & 1``. We return the orientation the usual
  loaders use (SpikingJelly's): ``x' = 127 - y``, ``y' = 127 - x``, ``p' = 1 - p``.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import DataError

Events = dict[str, np.ndarray]

_PACKET_HEADER = np.dtype(
    [
        ("type", "<i2"),
        ("source", "<i2"),
        ("size", "<i4"),
        ("ts_offset", "<i4"),
        ("ts_overflow", "<i4"),
        ("capacity", "<i4"),
        ("number", "<i4"),
        ("valid", "<i4"),
    ]
)
POLARITY_EVENT = 1
POLARITY_SIZE = 8  # bytes: uint32 data, uint32 timestamp


def make_events(t, x, y, p) -> Events:
    """``Events`` with the library's dtypes."""
    return {
        "t": np.asarray(t, dtype=np.int64),
        "x": np.asarray(x, dtype=np.int16),
        "y": np.asarray(y, dtype=np.int16),
        "p": np.asarray(p, dtype=np.int8),
    }


def _read(path: str | os.PathLike) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read event file: {e}") from e


def _skip_header(raw: bytes, path: str | os.PathLike, end_marker: bytes | None) -> int:
    """Offset of the first binary byte after the ``#`` header lines."""
    pos = 0
    while raw.startswith(b"#", pos):
        newline = raw.find(b"\n", pos)
        if newline < 0:
            raise DataError(f"{path}: event file ends inside its text header")
        line, pos = raw[pos:newline], newline + 1
        if end_marker is not None and line.rstrip(b"\r") == end_marker:
            return pos
    if end_marker is not None:
        raise DataError(f"{path}: no {end_marker.decode()} line: not an AEDAT 3.1 file")
    return pos


def _check_packet(head: np.void, pos: int, path: str | os.PathLike) -> None:
    """Refuse a packet header that cannot be right (``pos``: its offset in the file)."""
    size, capacity, number = int(head["size"]), int(head["capacity"]), int(head["number"])
    where = f"{path}: packet at byte {pos}"
    if size <= 0 or capacity < 0 or int(head["ts_overflow"]) < 0:
        raise DataError(f"{where}: corrupt header (event size {size}, capacity {capacity})")
    if not 0 <= number <= capacity:
        raise DataError(f"{where}: event count {number} outside 0..{capacity} (its capacity)")
    if int(head["type"]) == POLARITY_EVENT and size != POLARITY_SIZE:
        raise DataError(f"{where}: polarity events of {size} bytes, expected {POLARITY_SIZE}")


def read_aedat31(path: str | os.PathLike) -> Events:
    """Polarity events of an AEDAT 3.1 file (DVS128 Gesture)."""
    raw = _read(path)
    pos = _skip_header(raw, path, b"#!END-HEADER")
    parts = []
    while pos < len(raw):
        if pos + _PACKET_HEADER.itemsize > len(raw):
            raise DataError(f"{path}: truncated packet header at byte {pos}")
        head = np.frombuffer(raw, _PACKET_HEADER, count=1, offset=pos)[0]
        _check_packet(head, pos, path)
        pos += _PACKET_HEADER.itemsize
        size, capacity = int(head["size"]), int(head["capacity"])
        end = pos + size * capacity
        if end > len(raw):
            raise DataError(f"{path}: truncated packet ({end - len(raw)} bytes missing)")
        if int(head["type"]) == POLARITY_EVENT:
            words = np.frombuffer(raw, "<u4", count=capacity * 2, offset=pos)
            words = words.reshape(capacity, 2)[: int(head["number"])]
            parts.append((words[:, 0], words[:, 1], int(head["ts_overflow"])))
        pos = end
    if not parts:
        return make_events([], [], [], [])
    data = np.concatenate([d for d, _, _ in parts])
    t = np.concatenate([ts.astype(np.int64) | (over << 31) for _, ts, over in parts])
    return make_events(t, data >> 17 & 0x7FFF, data >> 2 & 0x7FFF, data >> 1 & 1)


def read_cifar10dvs_aedat(path: str | os.PathLike) -> Events:
    """Events of a CIFAR10-DVS ``.aedat`` file (jAER AEDAT 2, 128x128 sensor)."""
    raw = _read(path)
    pos = _skip_header(raw, path, None)
    if (len(raw) - pos) % 8:
        raise DataError(f"{path}: {len(raw) - pos} event bytes is not a multiple of 8")
    pairs = np.frombuffer(raw, ">u4", offset=pos).reshape(-1, 2)
    address, t = pairs[:, 0], pairs[:, 1]
    x, y, p = address >> 1 & 0x7F, address >> 8 & 0x7F, address & 1
    return make_events(t, 127 - y, 127 - x, 1 - p.astype(np.int8))
