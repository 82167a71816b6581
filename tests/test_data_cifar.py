import hashlib
import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import cifar_batch, py2_pickle
from spikedistill.data import build_datasets, cifar
from spikedistill.data.safe_pickle import load_restricted_pickle
from spikedistill.errors import ConfigError, DataError


def trust_archive(monkeypatch, archive, kind="cifar10"):
    """Make ``archive`` (a test-made CIFAR archive) the official one: patch the spec's MD5."""
    attr = "CIFAR10" if kind == "cifar10" else "CIFAR100"
    spec = getattr(cifar, attr)
    md5 = hashlib.md5(Path(archive).read_bytes()).hexdigest()
    monkeypatch.setattr(cifar, attr, cifar.CifarSpec(**{**spec.__dict__, "md5": md5}))


def _check(train, test, expected):
    for split, ds in (("train", train), ("test", test)):
        images, labels = expected[split]
        assert ds.images.dtype == torch.uint8 and ds.images.shape[1:] == (3, 32, 32)
        np.testing.assert_array_equal(ds.images.numpy(), images)
        np.testing.assert_array_equal(ds.labels.numpy(), labels)


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
@pytest.mark.parametrize("archive", [False, True])
def test_round_trip_folder_and_archive(tmp_path, cifar_writer, kind, archive, monkeypatch):
    expected = cifar_writer(tmp_path, kind, archive=archive)
    if archive:
        spec = cifar.CIFAR10 if kind == "cifar10" else cifar.CIFAR100
        trust_archive(monkeypatch, tmp_path / spec.archive, kind)
    train, test, info = build_datasets(kind, tmp_path)
    _check(train, test, expected)
    assert len(train) == (30 if kind == "cifar10" else 6) and len(test) == 6
    assert info.num_classes == (10 if kind == "cifar10" else 100)
    assert info.in_channels == 3 and info.image_size == (32, 32)
    if archive:  # extracted next to the archive (no temporary folder left), and reused
        folder = "cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python"
        assert (tmp_path / folder).is_dir()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([folder, spec.archive])


def test_found_under_named_subfolder(tmp_path, cifar_writer):
    expected = cifar_writer(tmp_path / "cifar10", "cifar10", archive=False)
    _check(*build_datasets("cifar10", tmp_path)[:2], expected)


def test_normalisation_constants_and_option(tmp_path, cifar_writer):
    cifar_writer(tmp_path, "cifar10", archive=False)
    cifar_writer(tmp_path, "cifar100", archive=False)
    info10 = build_datasets("cifar10", tmp_path)[2]
    assert info10.mean == (0.4914, 0.4822, 0.4465) and info10.std == (0.2470, 0.2435, 0.2616)
    info100 = build_datasets("cifar100", tmp_path)[2]
    assert info100.mean == (0.5071, 0.4865, 0.4409) and info100.std == (0.2673, 0.2564, 0.2762)
    plain = build_datasets("cifar10", tmp_path, normalization="none")[2]
    assert plain.mean == (0.0,) * 3 and plain.std == (1.0,) * 3
    with pytest.raises(ConfigError, match="standard, none"):
        build_datasets("cifar10", tmp_path, normalization="zca")


def test_download_with_md5(tmp_path, cifar_writer, monkeypatch):
    mirror = tmp_path / "mirror"
    expected = cifar_writer(mirror, "cifar10", archive=True)
    archive = mirror / "cifar-10-python.tar.gz"
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    spec = cifar.CifarSpec(**{**cifar.CIFAR10.__dict__, "url": archive.as_uri(), "md5": md5})
    monkeypatch.setattr(cifar, "CIFAR10", spec)
    _check(*build_datasets("cifar10", tmp_path / "data", download=True)[:2], expected)

    bad = cifar.CifarSpec(**{**spec.__dict__, "md5": "0" * 32})
    monkeypatch.setattr(cifar, "CIFAR10", bad)
    with pytest.raises(DataError, match="checksum mismatch"):
        build_datasets("cifar10", tmp_path / "other", download=True)
    assert not (tmp_path / "other" / "cifar-10-python.tar.gz").exists()


def test_published_archive_facts():
    assert cifar.CIFAR10.md5 == "c58f30108f718f92721af3b95e74349a"
    assert cifar.CIFAR100.md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert cifar.CIFAR10.url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def test_missing_data_message(tmp_path):
    with pytest.raises(DataError, match="cifar-100-python") as info:
        build_datasets("cifar100", tmp_path)
    assert "data.download=true" in str(info.value) and "--download" not in str(info.value)


def test_missing_batch_and_bad_batches(tmp_path, cifar_writer):
    cifar_writer(tmp_path, "cifar10", archive=False)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        build_datasets("cifar10", tmp_path)
    images = np.zeros((4, 3, 32, 32), np.uint8)
    (folder / "data_batch_3").write_bytes(cifar_batch(images, np.arange(3), "labels"))
    with pytest.raises(DataError, match="4 images but 3 labels"):
        build_datasets("cifar10", tmp_path)
    (folder / "data_batch_3").write_bytes(cifar_batch(images, np.array([0, 1, 2, 10]), "labels"))
    with pytest.raises(DataError, match="outside"):
        build_datasets("cifar10", tmp_path)
    (folder / "data_batch_3").write_bytes(b"\x80\x02}q\x01(U\x04data")  # truncated pickle
    with pytest.raises(DataError, match="data_batch_3"):
        build_datasets("cifar10", tmp_path)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_restricted_unpickler_refuses_other_globals(capsys):
    for payload in (
        pickle.dumps(_Evil(), protocol=2),
        pickle.dumps({"data": _Evil()}),
        b"cos\nsystem\n(S'echo pwned'\ntR.",
    ):
        with pytest.raises(DataError, match="not allowed"):
            load_restricted_pickle(io.BytesIO(payload), "evil")
    assert "pwned" not in capsys.readouterr().out


def test_restricted_unpickler_reads_python3_pickles():
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for protocol in (2, 4, 5):
        out = load_restricted_pickle(io.BytesIO(pickle.dumps({b"data": arr}, protocol)), "x")
        np.testing.assert_array_equal(out[b"data"], arr)
    assert load_restricted_pickle(io.BytesIO(py2_pickle({b"a": [1, b"b"]})), "x") == {"a": [1, "b"]}
