import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from spikedistill.data import build_datasets, mnist
from spikedistill.errors import DataError

# the shared copy sits at ../shared/data/mnist from the project root
REAL_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def _check(train, test, arrays):
    np.testing.assert_array_equal(train.images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(train.labels.numpy(), arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(test.images[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(test.labels.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("where", [".", "mnist", "MNIST/raw"])
def test_reads_every_location_and_compression(tmp_path, mnist_writer, gz, where):
    arrays = mnist_writer(tmp_path / where, gz=gz)
    train, test, info = build_datasets("mnist", tmp_path)
    _check(train, test, arrays)
    assert (info.num_classes, info.in_channels, info.image_size) == (10, 1, (28, 28))
    assert info.mean == (0.1307,) and info.std == (0.3081,)


def test_missing_files_error_lists_places_and_remedies(tmp_path, mnist_writer):
    mnist_writer(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as info:
        build_datasets("mnist", tmp_path)
    message = str(info.value)
    for place in (tmp_path, tmp_path / "mnist", tmp_path / "MNIST" / "raw"):
        assert str(place) in message
    assert f"{tmp_path / 'mnist'} lacks t10k-labels-idx1-ubyte." in message
    assert "data.download=true" in message and "SPIKEDISTILL_DATA" in message
    assert "--download" not in message


def test_count_mismatch(tmp_path, mnist_writer, idx_writer):
    mnist_writer(tmp_path)
    idx_writer(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(19, np.uint8), gz=True)
    with pytest.raises(DataError, match=r"20 images but .* 19 labels"):
        build_datasets("mnist", tmp_path)


def test_wrong_image_shape_and_label_range(tmp_path, mnist_writer, idx_writer):
    mnist_writer(tmp_path)
    idx_writer(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(20, 10, np.uint8), gz=True)
    with pytest.raises(DataError, match=r"outside 0\.\.9"):
        build_datasets("mnist", tmp_path)
    idx_writer(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((20, 27, 28), np.uint8), gz=True)
    with pytest.raises(DataError, match=r"\[N, 28, 28\]"):
        build_datasets("mnist", tmp_path)


def test_corrupt_file_names_the_file(tmp_path, mnist_writer):
    mnist_writer(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz"):
        build_datasets("mnist", tmp_path)


def test_download_from_file_url(tmp_path, mnist_writer, monkeypatch):
    mirror = tmp_path / "mirror"
    arrays = mnist_writer(mirror)
    md5s = {stem: hashlib.md5((mirror / f"{stem}.gz").read_bytes()).hexdigest() for stem in arrays}
    monkeypatch.setattr(mnist, "MNIST_URL", mirror.as_uri() + "/")
    monkeypatch.setattr(mnist, "MNIST_FILES", md5s)
    root = tmp_path / "data"
    train, test, _ = build_datasets("mnist", root, download=True)
    _check(train, test, arrays)
    assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(f"{s}.gz" for s in md5s)

    md5s["t10k-images-idx3-ubyte"] = "0" * 32
    other = tmp_path / "other"
    with pytest.raises(DataError, match="checksum mismatch"):
        build_datasets("mnist", other, download=True)
    assert not (other / "mnist" / "t10k-images-idx3-ubyte.gz").exists()


def test_real_checksums_are_the_published_ones():
    assert mnist.MNIST_FILES["train-images-idx3-ubyte"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert mnist.MNIST_URL == "https://ossci-datasets.s3.amazonaws.com/mnist/"


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="real MNIST not available")
def test_real_mnist():
    start = time.perf_counter()
    train, test, _ = build_datasets("mnist", REAL_MNIST)
    elapsed = time.perf_counter() - start
    assert train.images.shape == (60000, 1, 28, 28) and len(test) == 10000
    assert torch.bincount(test.labels).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    assert torch.bincount(train.labels).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert abs(train.images.double().mean().item() - 33.32) < 0.01
    assert elapsed < 5.0  # vectorised reading (about 0.3 s here)
