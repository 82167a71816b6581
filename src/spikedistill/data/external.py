"""Your own datasets, named ``package.module:callable`` wherever a dataset name is accepted.

The callable builds datasets as the registered builders do. It is called with
``data.options`` and whichever of ``root`` (the data folder), ``download`` and ``seed`` its
signature takes, and returns ``(train, test, info)``:

- ``train``, ``test``: ``torch.utils.data.Dataset``\\ s of ``(image, label)``, the image a float
  tensor ``[C, H, W]`` in [0, 1] (event frames ``[T, C, H, W]``), the label an int;
- ``info``: a :class:`DatasetInfo` (class count, channels, image size, mean and std).

The loader normalises with ``info.mean``/``info.std``. An :class:`ImageTensorDataset` is
batched straight from memory; any other dataset goes through a ``DataLoader`` with
``data.num_workers`` workers. The first sample of each split is checked when the datasets are
built, so a format mistake is named before training starts.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError, SpikeDistillError, described, first_line
from ..typed import check_options, parameter_types
from ..user_code import accepted, find_callable, takes_any_keyword
from .info import DatasetInfo

COMMON = ("root", "download", "seed")  # what the trainer gives every builder


def external_builder(name: str) -> Callable[..., Any]:
    """The callable ``package.module:callable`` names."""
    return find_callable(name, "dataset")


def call_external(
    name: str, builder: Callable[..., Any], options: dict[str, Any], **common: Any
) -> tuple[Dataset, Dataset, DatasetInfo]:
    """``builder(**options, **common)`` (``common``: what its signature takes), checked."""
    if not takes_any_keyword(builder):
        types = parameter_types(builder, skip=COMMON)
        options = check_options(options, types, "data.options", f"dataset {name!r}")
    try:
        built = builder(**options, **accepted(builder, common))
    except TypeError as err:
        raise ConfigError(f"dataset {name!r} rejected its options: {first_line(err)}") from None
    except SpikeDistillError:
        raise
    except Exception as err:  # your code's error, not ours (--debug shows its traceback)
        raise DataError(f"dataset {name!r}: your builder raised {described(err)}") from err
    if not (isinstance(built, tuple) and len(built) == 3 and isinstance(built[2], DatasetInfo)):
        got = type(built).__name__ + (f" of {len(built)}" if isinstance(built, tuple) else "")
        if isinstance(built, tuple) and len(built) == 3:
            got = f"(train, test, info) whose info is a {type(built[2]).__name__}"
        raise ConfigError(
            f"dataset {name!r} returned a {got}; it must return (train, test, info), two "
            "Datasets and a spikedistill.data.DatasetInfo"
        )
    train, test, info = built
    for split, dataset in (("training", train), ("test", test)):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise ConfigError(
                f"dataset {name!r} returned a {type(dataset).__name__} as its {split} set; a "
                "map-style Dataset is needed (__len__ and __getitem__), as the loader shuffles "
                "and shards by index"
            )
        if len(dataset) > 0:
            where = f"dataset {name!r}: {split} sample 0"
            check_sample(first_sample(dataset, where), info, where)
    return train, test, info


def first_sample(dataset: Dataset, where: str) -> Any:
    """``dataset``'s sample 0, as the loader reads it (``load`` with a generator if it has
    one); an error of the dataset's code names ``where`` ("dataset ...: test sample 0")."""
    load = getattr(dataset, "load", None)
    try:
        return dataset[0] if load is None else load(0, torch.Generator().manual_seed(0))
    except SpikeDistillError:
        raise
    except Exception as err:
        raise DataError(f"{where} could not be read: {described(err)}") from err


def check_sample(sample: Any, info: DatasetInfo, where: str) -> None:
    """``DataError`` unless ``sample`` is ``(float image in [0, 1] of info's shape, label)``."""
    if not (isinstance(sample, (tuple, list)) and len(sample) == 2):
        raise DataError(f"{where} is a {type(sample).__name__}, not an (image, label) pair")
    image, label = sample
    _check_image(image, info, where)
    if isinstance(label, Tensor) and label.numel() == 1 and not label.is_floating_point():
        label = label.item()
    if isinstance(label, bool) or not isinstance(label, numbers.Integral):
        raise DataError(f"{where}: the label is {label!r}, not an integer class index")
    if not 0 <= label < info.num_classes:
        raise DataError(f"{where}: label {label} is outside [0, {info.num_classes}) (info)")


def _check_image(image: Any, info: DatasetInfo, where: str) -> None:
    if not isinstance(image, Tensor):
        hint = " (torchvision: transform=transforms.ToTensor())" if hasattr(image, "mode") else ""
        kind = type(image).__name__
        raise DataError(f"{where}: the image is not a tensor but a {kind}{hint}")
    if not image.is_floating_point():
        raise DataError(
            f"{where}: the image is {image.dtype}; give floats in [0, 1] (divide by 255), or "
            "an ImageTensorDataset of uint8 images"
        )
    frames = () if info.time_steps is None else (info.time_steps,)
    expected = (*frames, info.in_channels, *info.image_size)
    if tuple(image.shape) != expected:
        layout = "[C, H, W]" if not frames else "[T, C, H, W]"
        raise DataError(
            f"{where}: the image is {list(image.shape)}; info says {list(expected)} {layout}"
        )
    low, high = float(image.min()), float(image.max())
    plain = all(m == 0 for m in info.mean) and all(s == 1 for s in info.std)
    if not plain and (low < 0 or high > 1):
        raise DataError(
            f"{where}: the image's values span [{low:.3g}, {high:.3g}], not [0, 1]; the loader "
            "normalises with info.mean/std: drop your own Normalize, or set mean 0 and std 1"
        )
