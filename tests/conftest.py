"""Shared fixtures. The data-format writers below produce small files in the real on-disk
formats (written from the format descriptions, independently of the readers under test)."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from third_party import make_torchvision_importable

if not torch.cuda.is_available():  # Triton kernels run in Triton's interpreter (before import)
    os.environ.setdefault("TRITON_INTERPRET", "1")

make_torchvision_importable()  # SpikingJelly and timm import it; see third_party.py

if os.environ.get("PYTEST_XDIST_WORKER"):  # `-n 2`: one thread per worker process, not two each
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def cpu_unless_marked_gpu(request, monkeypatch):
    """On a CUDA machine every test not marked ``gpu`` runs as in CI, on the CPU: ``auto``
    devices resolve to the CPU here and in the CLI runs a test starts."""
    if torch.cuda.is_available() and request.node.get_closest_marker("gpu") is None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


# ---------------------------------------------------------------------------------------------
# IDX (MNIST): 0x00 0x00, dtype code, ndim, ndim big-endian uint32 sizes, big-endian C payload.

IDX_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialise ``array`` as IDX."""
    kind = array.dtype.kind + str(array.dtype.itemsize)
    header = bytes([0, 0, IDX_CODES[kind], array.ndim])
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture(scope="session")
def idx_writer():
    return write_idx


MNIST_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def write_mnist(folder: Path, n_train: int = 30, n_test: int = 20, *, gz: bool = True) -> dict:
    """Four tiny MNIST files in ``folder``; returns the arrays written."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10)[::-1].astype(np.uint8),
    }
    for stem, array in arrays.items():
        write_idx(folder / (stem + (".gz" if gz else "")), array, gz=gz)
    return arrays


@pytest.fixture(scope="session")
def mnist_writer():
    return write_mnist


# ---------------------------------------------------------------------------------------------
# CIFAR "python version": Python 2 (protocol 2) pickles of dicts of byte strings, lists and a
# uint8 array [N, 3072] (1024 R, 1024 G, 1024 B values per row), in a gzipped tar archive.


class Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` opcodes, as the original cPickle files do."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    # numpy 1.x (the files' era) module name of the array rebuild helper
    return buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def cifar_batch(images: np.ndarray, labels: np.ndarray, label_key: str, extra=None) -> bytes:
    batch = {
        b"batch_label": b"testing batch 1 of 1",
        label_key.encode(): [int(v) for v in labels],
        b"data": images.reshape(len(images), -1),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(images))],
    }
    batch.update(extra or {})
    return py2_pickle(batch)


def write_cifar(root: Path, kind: str, *, archive: bool, n: int = 6, seed: int = 0) -> dict:
    """A small CIFAR-10 (5 train batches + test) or CIFAR-100 (train + test) under ``root``,
    as the extracted folder or as the .tar.gz archive; returns the expected arrays."""
    rng = np.random.default_rng(seed)
    if kind == "cifar10":
        folder, files, key, classes = (
            "cifar-10-batches-py",
            [f"data_batch_{i}" for i in range(1, 6)],
            "labels",
            10,
        )
        test_files = ["test_batch"]
    else:
        folder, files, key, classes = "cifar-100-python", ["train"], "fine_labels", 100
        test_files = ["test"]
    contents, expected = {}, {"train": ([], []), "test": ([], [])}
    for split, names in (("train", files), ("test", test_files)):
        for name in names:
            images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
            labels = rng.integers(0, classes, n)
            extra = (
                {b"coarse_labels": [int(v) // 5 for v in labels]} if kind == "cifar100" else None
            )
            contents[f"{folder}/{name}"] = cifar_batch(images, labels, key, extra)
            expected[split][0].append(images)
            expected[split][1].append(labels)
    contents[f"{folder}/batches.meta" if kind == "cifar10" else f"{folder}/meta"] = py2_pickle(
        {b"label_names": [b"c%d" % i for i in range(classes)]}
    )
    root.mkdir(parents=True, exist_ok=True)
    if archive:
        name = "cifar-10-python.tar.gz" if kind == "cifar10" else "cifar-100-python.tar.gz"
        with tarfile.open(root / name, "w:gz") as tar:
            dir_info = tarfile.TarInfo(folder)
            dir_info.type = tarfile.DIRTYPE
            dir_info.mode = 0o755
            tar.addfile(dir_info)
            for path, data in contents.items():
                info = tarfile.TarInfo(path)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    else:
        for path, data in contents.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(data)
    return {s: (np.concatenate(i), np.concatenate(lab)) for s, (i, lab) in expected.items()}


@pytest.fixture(scope="session")
def cifar_writer():
    return write_cifar


# ---------------------------------------------------------------------------------------------
# ImageNet layout: {train,val}/<class>/<image>.png


def write_image_folders(root: Path, classes=("cat", "dog", "eel"), per_class: int = 3) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                h, w = 20 + 3 * i, 28 - 2 * i  # varied sizes and aspect ratios
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                pixels[..., c] = 40 * c  # a class-dependent channel
                Image.fromarray(pixels).save(folder / f"{split}_{i}.png")
    return root


@pytest.fixture(scope="session")
def image_folder_writer():
    return write_image_folders
