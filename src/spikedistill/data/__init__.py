"""Datasets, batch augmentations and deterministic loaders.

>>> train, test, info = build_datasets("digits")
>>> loader = make_loader(train, 64, train=True, info=info, seed=0)
>>> x, y = next(iter(loader))  # x: float32 [64, 1, 8, 8] normalised, y: int64 [64]
"""

from . import cifar, digits, dvs, imagenet, mnist, synthetic  # noqa: F401  (register datasets)
from .download import download_url, file_checksum, safe_extract_tar, verify_checksum
from .folder_dataset import ImageFolderDataset
from .idx import read_idx, read_idx_bytes
from .info import DatasetInfo
from .loader import FolderLoader, Loader, TensorLoader, make_loader
from .paths import resolve_data_root
from .registry import DATASETS, build_datasets, dataset_options
from .tensor_dataset import ImageTensorDataset
from .transforms import (
    autoaugment_cifar10,
    build_batch_transform,
    cutout,
    normalize,
    random_crop,
    random_hflip,
)

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "FolderLoader",
    "ImageFolderDataset",
    "ImageTensorDataset",
    "Loader",
    "TensorLoader",
    "autoaugment_cifar10",
    "build_batch_transform",
    "build_datasets",
    "cutout",
    "dataset_options",
    "download_url",
    "file_checksum",
    "make_loader",
    "normalize",
    "random_crop",
    "random_hflip",
    "read_idx",
    "read_idx_bytes",
    "resolve_data_root",
    "safe_extract_tar",
    "verify_checksum",
]
