import gzip
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import idx_bytes
from spikedistill.data import read_idx, read_idx_bytes
from spikedistill.errors import DataError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gz", [False, True])
def test_round_trip_every_dtype(tmp_path, idx_writer, dtype, gz):
    rng = np.random.default_rng(1)
    array = (rng.standard_normal((4, 3, 5)) * 100).astype(dtype)
    path = idx_writer(tmp_path / "a.idx", array, gz=gz)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype).newbyteorder("=") and out.shape == array.shape
    np.testing.assert_array_equal(out, array)
    assert out.flags.writeable


def test_gzip_is_detected_by_magic_not_name(tmp_path, idx_writer):
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    plain_named_gz = idx_writer(tmp_path / "plain.gz", array)
    gz_named_plain = idx_writer(tmp_path / "packed-idx1-ubyte", array, gz=True)
    np.testing.assert_array_equal(read_idx(plain_named_gz), array)
    np.testing.assert_array_equal(read_idx(gz_named_plain), array)


def test_one_dimensional_and_empty_dims():
    np.testing.assert_array_equal(read_idx_bytes(idx_bytes(np.arange(5, dtype=np.uint8))), range(5))
    assert read_idx_bytes(idx_bytes(np.zeros((0, 28, 28), np.uint8))).shape == (0, 28, 28)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x00", "bad IDX magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "unknown IDX dtype code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01", "truncated IDX header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02", "truncated IDX data"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "trailing bytes"),
        (b"\x00\x00\x0b\x01\x00\x00\x00\x01\x01", "needs 2 bytes"),
        (b"\x00\x08", "too short"),
    ],
)
def test_corrupt_inputs_raise_data_error(tmp_path, data, message):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert "bad-idx3-ubyte" in str(info.value)


def test_truncated_and_corrupt_gzip(tmp_path):
    packed = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32)))
    path = tmp_path / "t.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match="gzip"):
        read_idx(path)
    path.write_bytes(packed[:-4] + b"\x00\x00\x00\x00")  # wrong length in the trailer
    with pytest.raises(DataError, match="gzip"):
        read_idx(path)
    path.write_bytes(b"\x1f\x8b")
    with pytest.raises(DataError):
        read_idx(path)
    path.write_bytes(gzip.compress(b""))
    with pytest.raises(DataError, match="empty"):
        read_idx(path)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "nope")


def test_huge_declared_size_does_not_allocate():
    header = b"\x00\x00\x0e\x03" + struct.pack(">III", 2**32 - 1, 2**32 - 1, 2**32 - 1)
    with pytest.raises(DataError, match="truncated IDX data"):
        read_idx_bytes(header + b"\x00" * 100)


def _result_or_data_error(data: bytes) -> None:
    try:
        out = read_idx_bytes(data)
    except DataError:
        return
    assert isinstance(out, np.ndarray)


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(st.binary(max_size=64))
def test_fuzz_arbitrary_bytes(data):
    _result_or_data_error(data)
    _result_or_data_error(gzip.compress(data))
    _result_or_data_error(b"\x1f\x8b" + data)
    _result_or_data_error(b"\x00\x00" + data)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    code=st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]),
    dims=st.lists(st.integers(0, 6), min_size=1, max_size=4),
    delta=st.integers(-8, 8),
    gz=st.booleans(),
    cut=st.integers(0, 40),
)
def test_fuzz_valid_headers_with_wrong_sizes(code, dims, delta, gz, cut):
    itemsize = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}[code]
    header = bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    size = int(np.prod(dims)) * itemsize
    payload = bytes(range(256)) * (size // 256 + 1)
    body = payload[: max(0, size + delta)]
    data = header + body
    if gz:
        data = gzip.compress(data)
        data = data[: len(data) - cut] if cut else data
    if len(body) == size and not (gz and cut):
        assert read_idx_bytes(data).shape == tuple(dims)
    else:
        with pytest.raises(DataError):
            read_idx_bytes(data)
