"""ImageNet-style class folders: ``{train,val}/<class>/<image>``."""

from __future__ import annotations

import warnings
from pathlib import Path

from ..errors import ConfigError, DataError
from .folder_dataset import IMAGE_EXTENSIONS, ImageFolderDataset, class_folders, scan_images
from .info import DatasetInfo
from .paths import how_to_get_data
from .registry import DATASETS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def locate_imagenet(root: Path) -> Path:
    """``root/imagenet`` or ``root`` itself, whichever holds both ``train/`` and ``val/``."""
    candidates = [root / "imagenet", root]
    for base in candidates:
        if (base / "train").is_dir() and (base / "val").is_dir():
            return base
    looked = ", ".join(str(c) for c in candidates)
    raise DataError(
        f"ImageNet not found: looked for train/ and val/ class folders in {looked}. It cannot "
        "be downloaded automatically (its license requires registration at image-net.org); "
        f"put the images in {root / 'imagenet'}/{{train,val}}/<class>/ (the validation images "
        f"sorted into class folders too). {how_to_get_data('ImageNet', downloadable=False)}"
    )


@DATASETS.register("imagenet")
def build_imagenet(
    root: Path, *, download: bool = False, seed: int = 0, image_size: int = 224
) -> tuple[ImageFolderDataset, ImageFolderDataset, DatasetInfo]:
    """ImageNet (or any dataset in that layout): files decoded with Pillow on access.

    Classes are the sorted folder names present in both ``train/`` and ``val/``. Train samples
    are random-resized crops of ``image_size`` with flips; val samples are centre crops.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ConfigError(f"imagenet: image_size must be an integer >= 8, got {image_size!r}")
    base = locate_imagenet(root)
    train_classes, val_classes = class_folders(base / "train"), class_folders(base / "val")
    classes = sorted(set(train_classes) & set(val_classes))
    if not classes:
        raise DataError(f"{base}: train/ and val/ share no class folder")
    if len(classes) != len(train_classes) or len(classes) != len(val_classes):
        only = sorted(set(train_classes) ^ set(val_classes))
        warnings.warn(
            f"{base}: {len(only)} class folder(s) only in one of train/ and val/ are ignored: "
            f"{', '.join(only[:5])}{' ...' if len(only) > 5 else ''}",
            stacklevel=2,
        )
    splits = []
    for split, train in (("train", True), ("val", False)):
        paths, labels = scan_images(base / split, classes)
        if not paths:
            raise DataError(f"{base / split}: no image files in the class folders")
        found = set(labels)
        empty = [c for i, c in enumerate(classes) if i not in found]
        if empty and train:  # a class that cannot be learnt, yet sized into the classifier
            raise DataError(
                f"{base / split}: the class folder(s) {', '.join(empty[:5])} hold no image "
                f"files ({', '.join(IMAGE_EXTENSIONS)}); fill or remove them"
            )
        if empty:
            warnings.warn(f"{base / split}: no test images of {', '.join(empty[:5])}", stacklevel=2)
        splits.append(
            ImageFolderDataset(paths, labels, train=train, image_size=image_size, classes=classes)
        )
    info = DatasetInfo(len(classes), 3, (image_size, image_size), IMAGENET_MEAN, IMAGENET_STD)
    return splits[0], splits[1], info
