"""Reader of the IDX format (MNIST & co.), raw or gzip-compressed.

Layout: 2 zero bytes, a dtype code, the number of dimensions ``ndim``, ``ndim`` big-endian
uint32 sizes, then the C-ordered big-endian payload. Anything else raises ``DataError``.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from typing import BinaryIO

import numpy as np

from ..errors import DataError

# dtype code -> big-endian numpy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"
MAX_DIMS = 32  # numpy's limit (numpy 1.x); real IDX files have 1 to 4
_CHUNK = 1 << 24  # read in 16 MiB pieces: a header may claim any size without allocating it
_STREAM_ERRORS = (OSError, EOFError, zlib.error)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzip detected by its magic bytes, not its name) into a native-endian,
    writable ``numpy.ndarray`` of the shape in its header. Raises ``DataError`` naming the file."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            return _read_stream(f, name)
    except OSError as e:
        raise DataError(f"{name}: cannot read IDX file: {e}") from e


def read_idx_bytes(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Like :func:`read_idx` for file contents already in memory."""
    return _read_stream(io.BytesIO(data), name)


def _read_stream(f: BinaryIO, name: str) -> np.ndarray:
    head = f.read(2)
    if not head:
        raise DataError(f"{name}: empty file, expected an IDX header")
    f.seek(0)
    if head == GZIP_MAGIC:
        try:
            with gzip.GzipFile(fileobj=f, mode="rb") as g:
                return _parse(g, name, compressed=True)
        except _STREAM_ERRORS as e:
            raise DataError(f"{name}: corrupt or truncated gzip data ({e})") from e
    return _parse(f, name, compressed=False)


def _read_exactly(f: BinaryIO, n: int) -> bytearray:
    """Up to ``n`` bytes (fewer only at end of stream), read in bounded chunks."""
    chunks = []
    remaining = n
    while remaining > 0:
        chunk = f.read(min(remaining, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return bytearray().join(chunks)


def _parse(f: BinaryIO, name: str, *, compressed: bool) -> np.ndarray:
    kind = "decompressed IDX data" if compressed else "IDX file"
    magic = _read_exactly(f, 4)
    if len(magic) == 0:
        raise DataError(f"{name}: empty {kind}, expected an IDX header")
    if len(magic) < 4:
        raise DataError(f"{name}: {kind} too short ({len(magic)} bytes) for the 4-byte magic")
    if magic[0] != 0 or magic[1] != 0:
        raise DataError(
            f"{name}: bad IDX magic {bytes(magic).hex()}: the first two bytes must be zero "
            "(not an IDX file?)"
        )
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        valid = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
        raise DataError(f"{name}: unknown IDX dtype code 0x{code:02x} (valid: {valid})")
    if not 1 <= ndim <= MAX_DIMS:
        raise DataError(
            f"{name}: IDX header declares {ndim} dimensions (expected 1..{MAX_DIMS}; "
            "a corrupt header?)"
        )
    dims_raw = _read_exactly(f, 4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise DataError(
            f"{name}: truncated IDX header: {ndim} dimensions need {4 * ndim} bytes of sizes, "
            f"found {len(dims_raw)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(dims_raw, dtype=">u4"))
    dtype = IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    payload = _read_exactly(f, expected)
    if len(payload) < expected:
        raise DataError(
            f"{name}: truncated IDX data: shape {shape} of {dtype.name} needs {expected} bytes, "
            f"found {len(payload)}"
        )
    if f.read(1):
        extra = 1 + len(_read_exactly(f, _CHUNK))
        more = "+" if extra > _CHUNK else ""
        raise DataError(
            f"{name}: {extra}{more} trailing bytes after the {expected} bytes of data "
            f"for shape {shape} (sizes in the header do not match the file)"
        )
    try:
        array = np.frombuffer(payload, dtype=dtype).reshape(shape)
    except ValueError as e:  # e.g. (0, 2**32, 2**32, ...): a size numpy cannot index
        raise DataError(f"{name}: IDX shape {shape} is not a valid array shape ({e})") from None
    return array if dtype.itemsize == 1 else array.astype(dtype.newbyteorder("="))
