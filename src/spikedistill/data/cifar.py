"""CIFAR-10 / CIFAR-100 from the official "python version" archives.

Accepted, in this order, under ``root`` (or ``root/cifar10`` / ``root/cifar100``): the extracted
folder (``cifar-10-batches-py`` / ``cifar-100-python``, refused if a batch file is missing), the
``.tar.gz`` archive (MD5-checked, then extracted next to it all or nothing, see
``install_archive``), or, with ``download=True``, the archive fetched and MD5-checked. The batch
files are pickles: they are read with a restricted unpickler (see ``safe_pickle``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .download import download_url, install_archive
from .info import DatasetInfo
from .paths import how_to_get_data
from .registry import DATASETS
from .safe_pickle import load_restricted_pickle
from .tensor_dataset import ImageTensorDataset


@dataclass(frozen=True)
class CifarSpec:
    name: str
    url: str
    archive: str
    md5: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


CIFAR10 = CifarSpec(
    name="cifar10",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    archive="cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    label_key="labels",
    num_classes=10,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
)
CIFAR100 = CifarSpec(
    name="cifar100",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    archive="cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
    folder="cifar-100-python",
    train_files=("train",),
    test_files=("test",),
    label_key="fine_labels",
    num_classes=100,
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
)
NORMALIZATIONS = ("standard", "none")


def _field(batch: dict[Any, Any], key: str, path: Path) -> Any:
    for k in (key, key.encode()):  # str keys (latin-1 decoding) or bytes keys
        if k in batch:
            return batch[k]
    raise DataError(f"{path}: CIFAR batch has no {key!r} entry (keys: {sorted(map(str, batch))})")


def _check_labels(labels: Any, n: int, key: str, num_classes: int, path: Path) -> np.ndarray:
    """The labels as ``int64 [n]``: integers (never truncated floats) in ``0..num_classes-1``."""
    try:
        array = np.asarray(labels)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: {key!r} is not a list of integers ({e})") from e
    if array.ndim != 1 or len(array) != n:
        raise DataError(f"{path}: {n} images but {array.size} labels")
    if n and array.dtype.kind not in "iu":  # bools, floats, strings, objects, huge ints
        raise DataError(f"{path}: {key!r} must hold integers, got {array.dtype} values")
    array = array.astype(np.int64)
    bad = np.flatnonzero((array < 0) | (array >= num_classes))
    if len(bad):
        raise DataError(
            f"{path}: label {array[bad[0]]} of image {bad[0]} outside 0..{num_classes - 1} "
            f"({len(bad)} such label(s))"
        )
    return array


def read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> ``(uint8 [N, 3, 32, 32], int64 [N])``, validated."""
    try:
        with open(path, "rb") as f:
            batch = load_restricted_pickle(f, str(path))
    except OSError as e:
        raise DataError(f"{path}: cannot read CIFAR batch: {e}") from e
    except DataError as e:  # e.g. cut short by an interrupted extraction of an older version
        raise DataError(f"{e}; if it is truncated, delete {path.parent} to extract it again") from e
    if not isinstance(batch, dict):
        raise DataError(f"{path}: expected a dict in the CIFAR batch, got {type(batch).__name__}")
    data = _field(batch, "data", path)
    labels = _field(batch, label_key, path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"{path}: 'data' must be a uint8 array [N, 3072]")
    if data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' rows have {data.shape[1]} values, expected 3072")
    labels = _check_labels(labels, len(data), label_key, num_classes, path)
    return data.reshape(-1, 3, 32, 32), labels


def _check_complete(spec: CifarSpec, folder: Path, archives: list[Path]) -> Path:
    """``folder`` if it holds every batch file, else ``DataError`` saying how to repair it."""
    missing = [f for f in (*spec.train_files, *spec.test_files) if not (folder / f).is_file()]
    if not missing:
        return folder
    archive = next((a for a in archives if a.is_file()), None)
    remedy = (
        f"delete the folder to extract it again from {archive}"
        if archive
        else f"delete the folder and get {spec.archive} again (data.download=true)"
    )
    raise DataError(
        f"{folder}: incomplete, missing batch file(s) {', '.join(missing)} (an interrupted "
        f"extraction?); {remedy}"
    )


def locate_cifar(spec: CifarSpec, root: Path, download: bool) -> Path:
    """The extracted folder, extracting (after an MD5 check) or downloading the archive when
    needed; archives are installed all or nothing (see ``install_archive``)."""
    candidates = [root, root / spec.name]
    archives = [base / spec.archive for base in candidates]
    for base in candidates:
        if (base / spec.folder).is_dir():
            return _check_complete(spec, base / spec.folder, archives)
    required = (*spec.train_files, *spec.test_files)
    for base, archive in zip(candidates, archives, strict=True):
        if archive.is_file():
            return install_archive(archive, base, spec.folder, md5=spec.md5, required=required)
    if not download:
        looked = ", ".join(str(c) for c in candidates)
        raise DataError(
            f"{spec.name} not found: looked in {looked} for the folder {spec.folder}/ or the "
            f"archive {spec.archive} ({spec.url}). {how_to_get_data(spec.name)}"
        )
    archive = download_url(spec.url, root / spec.archive, md5=spec.md5)
    return install_archive(archive, root, spec.folder, required=required)


def load_cifar(
    spec: CifarSpec, root: Path, download: bool, normalization: str
) -> tuple[ImageTensorDataset, ImageTensorDataset, DatasetInfo]:
    if normalization not in NORMALIZATIONS:
        raise ConfigError(
            f"unknown normalization {normalization!r}; valid: {', '.join(NORMALIZATIONS)}"
        )
    folder = locate_cifar(spec, root, download)

    def split(files: tuple[str, ...]) -> ImageTensorDataset:
        parts = [read_cifar_batch(folder / f, spec.label_key, spec.num_classes) for f in files]
        images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
        return ImageTensorDataset(images, torch.from_numpy(np.concatenate([p[1] for p in parts])))

    if normalization == "standard":
        mean, std = spec.mean, spec.std
    else:  # inputs stay in [0, 1]
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    info = DatasetInfo(spec.num_classes, 3, (32, 32), mean, std)
    return split(spec.train_files), split(spec.test_files), info


@DATASETS.register("cifar10")
def build_cifar10(
    root: Path, *, download: bool = False, seed: int = 0, normalization: str = "standard"
) -> tuple[ImageTensorDataset, ImageTensorDataset, DatasetInfo]:
    """CIFAR-10: 50000 train / 10000 test, ``uint8 [N, 3, 32, 32]``, 10 classes.

    ``normalization``: "standard" (the usual per-channel CIFAR-10 statistics) or "none".
    """
    return load_cifar(CIFAR10, root, download, normalization)


@DATASETS.register("cifar100")
def build_cifar100(
    root: Path, *, download: bool = False, seed: int = 0, normalization: str = "standard"
) -> tuple[ImageTensorDataset, ImageTensorDataset, DatasetInfo]:
    """CIFAR-100 (fine labels): 50000 train / 10000 test, ``uint8 [N, 3, 32, 32]``, 100 classes.

    ``normalization``: "standard" (the usual per-channel CIFAR-100 statistics) or "none".
    """
    return load_cifar(CIFAR100, root, download, normalization)
