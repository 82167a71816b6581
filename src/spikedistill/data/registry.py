"""The dataset registry and ``build_datasets``, the single entry point of the trainer."""

from __future__ import annotations

import inspect
import numbers
import os
from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from ..registry import Registry
from ..typed import check_options, parameter_types
from ..user_code import is_external
from .external import COMMON, call_external, external_builder
from .info import DatasetInfo
from .labelled_view import LabelledView, known_labels
from .paths import resolve_data_root
from .subsets import class_balanced_indices, noisy_labels

DatasetBuilder = Callable[..., tuple[Dataset, Dataset, DatasetInfo]]
DATASETS: Registry[DatasetBuilder] = Registry("dataset")
"""Builders ``fn(root: Path, *, download: bool, seed: int, **options) -> (train, test, info)``;
the options a dataset accepts are its builder's other keyword arguments. A name
``package.module:callable`` is your own builder (``data.external``)."""


def dataset_builder(name: str) -> DatasetBuilder:
    """The builder of a registered dataset, or your own ``package.module:callable``."""
    return external_builder(name) if is_external(name) else DATASETS.get(name)


def dataset_options(name: str) -> dict[str, Any]:
    """The options of dataset ``name`` with their defaults."""
    params = inspect.signature(dataset_builder(name)).parameters
    return {
        k: p.default
        for k, p in params.items()
        if k not in COMMON and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def build_datasets(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    train_subset: int | None = None,
    label_noise: float = 0.0,
    seed: int = 0,
    **options: Any,
) -> tuple[Dataset, Dataset, DatasetInfo]:
    """Build ``(train, test, info)`` for the registered dataset ``name``.

    ``train_subset``: keep a class-balanced random subset of that many training samples;
    ``label_noise``: replace each training label, with that probability, by a different class
    drawn uniformly. Both are deterministic from ``seed``; the test set is never changed.
    """
    builder = dataset_builder(name)
    if not is_external(name):
        types = parameter_types(builder, skip=COMMON)
        options = check_options(options, types, "data.options", f"dataset {name!r}")
    if train_subset is not None and (
        isinstance(train_subset, bool) or not isinstance(train_subset, numbers.Integral)
    ):
        raise ConfigError(f"train_subset must be an integer or None, got {train_subset!r}")
    if isinstance(label_noise, bool) or not isinstance(label_noise, numbers.Real):
        raise ConfigError(f"label_noise must be a number in [0, 1), got {label_noise!r}")
    if not 0.0 <= float(label_noise) < 1.0:
        raise ConfigError(f"label_noise must be in [0, 1), got {label_noise}")

    data_root = resolve_data_root(root)
    if is_external(name):
        common = dict(root=data_root, download=download, seed=seed)
        train, test, info = call_external(name, builder, options, **common)
    else:
        train, test, info = builder(data_root, download=download, seed=seed, **options)
    for split, dataset in (("training", train), ("test", test)):
        if len(dataset) == 0:  # type: ignore[arg-type]
            where = "" if is_external(name) else f" (data root {data_root})"
            raise DataError(
                f"dataset {name!r}{where}: the {split} set is empty, so nothing could be "
                "trained or measured; check its files"
            )

    if train_subset is not None or label_noise > 0:
        train = _relabelable(name, train)
    if train_subset is not None:
        train = train.subset(
            class_balanced_indices(train.labels, info.num_classes, int(train_subset), seed)
        )
    if label_noise > 0:
        if int(train.labels.max()) >= info.num_classes:
            raise DataError(f"{name}: labels exceed num_classes={info.num_classes}")
        train = train.with_labels(
            noisy_labels(train.labels, info.num_classes, float(label_noise), seed)
        )
    return train, test, info


def _relabelable(name: str, train: Dataset) -> Dataset:
    """``train`` with the ``labels`` (int64), ``subset(indices)`` and ``with_labels(labels)``
    that ``train_subset`` and ``label_noise`` use: its own (``ImageTensorDataset``), or a
    ``LabelledView`` of a dataset that names its labels (``targets``, as torchvision's)."""
    if all(hasattr(train, a) for a in ("labels", "subset", "with_labels")):
        return train
    labels = known_labels(train)
    if labels is None:
        raise ConfigError(
            "data.train_subset and data.label_noise need the training labels without reading "
            f"every sample: dataset {name!r} gives a {type(train).__name__} with neither "
            "targets nor labels (one int per sample, as torchvision's datasets have)"
        )
    return LabelledView(train, labels)


@DATASETS.register("python", listed=False)
def _given_in_python(
    root: os.PathLike, *, download: bool = False, seed: int = 0
) -> tuple[Dataset, Dataset, DatasetInfo]:
    """The data of a run trained from Python on your own loaders (``spikedistill.train``)."""
    raise ConfigError(
        "data.name=python: this run was trained on DataLoaders given in Python "
        "(spikedistill.train), which a config cannot rebuild; measure it in Python with those "
        "loaders (eval --data NAME also takes it when its student can be rebuilt)"
    )
