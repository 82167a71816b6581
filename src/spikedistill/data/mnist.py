"""MNIST from its four IDX files (raw or gzipped), optionally downloaded with MD5 checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .download import download_url
from .idx import read_idx
from .info import DatasetInfo
from .paths import how_to_get_data
from .registry import DATASETS
from .tensor_dataset import ImageTensorDataset

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
# file stem -> MD5 of the original .gz archive
MNIST_FILES = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_INFO = DatasetInfo(10, 1, (28, 28), (0.1307,), (0.3081,))


def mnist_dirs(root: Path) -> list[Path]:
    """Folders searched, in order: ``root``, ``root/mnist``, ``root/MNIST/raw``."""
    return [root, root / "mnist", root / "MNIST" / "raw"]


def find_mnist_files(root: Path) -> dict[str, Path] | None:
    """The four files (each raw or ``.gz``) from the first folder that holds all of them."""
    for folder in mnist_dirs(root):
        found = {}
        for stem in MNIST_FILES:
            for name in (stem, stem + ".gz"):
                if (folder / name).is_file():
                    found[stem] = folder / name
                    break
        if len(found) == len(MNIST_FILES):
            return found
    return None


def download_mnist(folder: Path) -> dict[str, Path]:
    """Fetch the four ``.gz`` files into ``folder``, verifying their MD5s."""
    return {
        stem: download_url(MNIST_URL + stem + ".gz", folder / (stem + ".gz"), md5=md5)
        for stem, md5 in MNIST_FILES.items()
    }


def load_mnist_split(images_path: Path, labels_path: Path) -> ImageTensorDataset:
    """Read one split, checking shapes, dtypes, matching counts and the label range."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(
            f"{images_path}: expected uint8 images of shape [N, 28, 28], "
            f"got {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(
            f"{labels_path}: expected uint8 labels [N], got {labels.dtype} {labels.shape}"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    if len(images) == 0:
        raise DataError(f"{images_path}: holds 0 images (an empty or placeholder file?)")
    if int(labels.max()) > 9:
        raise DataError(f"{labels_path}: label {int(labels.max())} outside 0..9")
    return ImageTensorDataset(
        torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).to(torch.int64)
    )


def _not_found_message(root: Path) -> str:
    looked = ", ".join(str(d) for d in mnist_dirs(root))
    names = ", ".join(f"{stem}[.gz]" for stem in MNIST_FILES)
    partial = []
    for folder in mnist_dirs(root):
        missing = [
            s for s in MNIST_FILES if not any((folder / n).is_file() for n in (s, s + ".gz"))
        ]
        if len(missing) < len(MNIST_FILES):
            partial.append(f" {folder} lacks {', '.join(missing)}.")
    return (
        f"MNIST not found: looked in {looked} for {names}.{''.join(partial)} "
        f"{how_to_get_data('MNIST')}"
    )


@DATASETS.register("mnist")
def build_mnist(
    root: Path, *, download: bool = False, seed: int = 0
) -> tuple[ImageTensorDataset, ImageTensorDataset, DatasetInfo]:
    """MNIST: 60000 train / 10000 test digits, ``uint8 [N, 1, 28, 28]``."""
    files = find_mnist_files(root)
    if files is None:
        if not download:
            raise DataError(_not_found_message(root))
        files = download_mnist(root / "mnist")
    train = load_mnist_split(files["train-images-idx3-ubyte"], files["train-labels-idx1-ubyte"])
    test = load_mnist_split(files["t10k-images-idx3-ubyte"], files["t10k-labels-idx1-ubyte"])
    return train, test, MNIST_INFO
