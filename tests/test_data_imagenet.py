import json

import numpy as np
import pytest
import torch
from PIL import Image

from spikedistill.data import (
    FolderLoader,
    ImageFolderDataset,
    build_batch_transform,
    build_datasets,
    make_loader,
)
from spikedistill.data.folder_dataset import random_resized_crop_box
from spikedistill.errors import DataError


@pytest.fixture
def folders(tmp_path, image_folder_writer):
    image_folder_writer(tmp_path / "imagenet")
    return tmp_path


def test_builds_from_class_folders(folders):
    train, val, info = build_datasets("imagenet", folders, image_size=16)
    assert isinstance(train, ImageFolderDataset) and train.classes == ["cat", "dog", "eel"]
    assert len(train) == 9 and len(val) == 9
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert (info.num_classes, info.in_channels, info.image_size) == (3, 3, (16, 16))
    assert info.mean == (0.485, 0.456, 0.406) and info.std == (0.229, 0.224, 0.225)
    x, y = val[4]
    assert x.dtype == torch.float32 and x.shape == (3, 16, 16) and y == 1
    assert x.min() >= 0 and x.max() <= 1
    # root itself may hold train/ and val/
    assert len(build_datasets("imagenet", folders / "imagenet", image_size=16)[0]) == 9


def test_val_transform_is_resize_then_centre_crop(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (40, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    ds = ImageFolderDataset([str(tmp_path / "a.png")], [0], train=False, image_size=14)
    resized = Image.fromarray(pixels).resize((25, 16), Image.Resampling.BILINEAR)  # short side 16
    expected = np.array(resized)[1:15, 6:20]  # centre 14x14
    x, _ = ds[0]
    assert torch.equal((x * 255).round().byte().permute(1, 2, 0), torch.from_numpy(expected))


def test_random_resized_crop_box_is_valid_and_seeded():
    for seed in range(50):
        box = random_resized_crop_box(30, 20, torch.Generator().manual_seed(seed))
        left, top, w, h = box
        assert left >= 0 and top >= 0 and left + w <= 30 and top + h <= 20 and w > 0 and h > 0
        assert box == random_resized_crop_box(30, 20, torch.Generator().manual_seed(seed))


def test_missing_and_corrupt(tmp_path, folders):
    with pytest.raises(DataError, match="ImageNet not found") as info:
        build_datasets("imagenet", tmp_path / "nothing")
    assert "cannot be downloaded" in str(info.value)
    assert "data.download" not in str(info.value)  # no hint at a download that cannot be
    bad = folders / "imagenet" / "val" / "cat" / "val_0.png"
    bad.write_bytes(b"not a png")
    _, val, _ = build_datasets("imagenet", folders, image_size=16)
    with pytest.raises(DataError, match=r"val_0\.png"):
        val[0]
    png = bytearray((folders / "imagenet" / "val" / "cat" / "val_1.png").read_bytes())
    png[33:37] = (3).to_bytes(4, "big")  # IDAT chunk length: Pillow raises SyntaxError
    bad.write_bytes(bytes(png))
    with pytest.raises(DataError, match=r"val_0\.png: cannot decode image: broken PNG"):
        val[0]


def test_class_folders_only_in_one_split_are_ignored(folders):
    (folders / "imagenet" / "train" / "fox").mkdir()
    with pytest.warns(UserWarning, match="fox"):
        train, _, info = build_datasets("imagenet", folders, image_size=16)
    assert info.num_classes == 3 and "fox" not in train.classes


def test_an_empty_class_folder_is_refused_in_train_and_warned_of_in_val(folders):
    """A class with no training image would still size the classifier (and label noise
    would move labels into it)."""
    for split in ("train", "val"):
        (folders / "imagenet" / split / "emu").mkdir()
    (folders / "imagenet" / "train" / "emu" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"train: the class folder\(s\) emu hold no image"):
        build_datasets("imagenet", folders, image_size=16)
    (folders / "imagenet" / "train" / "cat" / "train_0.png").rename(
        folders / "imagenet" / "train" / "emu" / "e.png"
    )
    with pytest.warns(UserWarning, match="val: no test images of emu"):
        _, _, info = build_datasets("imagenet", folders, image_size=16)
    assert info.num_classes == 4


def test_folder_loader_deterministic_resumable_and_worker_independent(folders):
    train, val, info = build_datasets("imagenet", folders, image_size=16, train_subset=6)
    assert torch.bincount(train.labels).tolist() == [2, 2, 2]
    cutout = build_batch_transform(["cutout"], info)
    loader = make_loader(train, 2, train=True, transform=cutout, info=info, seed=3)
    assert isinstance(loader, FolderLoader) and len(loader) == 3
    loader.set_epoch(1)
    full = list(loader)
    assert full[0][0].shape == (2, 3, 16, 16) and full[0][1].dtype == torch.int64
    tail = list(loader.iter_from(1))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(full[1:], tail, strict=True))
    with_worker = make_loader(
        train, 2, train=True, transform=cutout, info=info, seed=3, num_workers=1
    )
    with_worker.set_epoch(1)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(full, with_worker, strict=True))
    loader.set_epoch(2)
    assert not torch.equal(torch.cat([x for x, _ in loader]), torch.cat([x for x, _ in full]))
    # eval: every image once over the ranks, normalised centre crops
    seen = [
        y
        for r in range(2)
        for _, y in make_loader(val, 4, train=False, info=info, rank=r, world_size=2)
    ]
    assert sorted(torch.cat(seen).tolist()) == sorted(val.labels.tolist())


@pytest.mark.parametrize("split", ["val", "train"])
def test_a_corrupt_image_keeps_the_training_done_for_resume(folders, capsys, split):
    """A test image is first read after a full epoch, which is saved before the error; a
    training image stops the run at the step that reads it, the steps before it saved. Once
    the file is fixed, resume ends like an unbroken run."""
    from spikedistill.checkpoint import load_checkpoint
    from spikedistill.cli import main

    config = folders / "img.yaml"
    config.write_text(
        "data: {name: imagenet, batch_size: 3, eval_batch_size: 9, options: {image_size: 16}}\n"
        "model: {name: convnet3, spiking: true, T: 2, options: {width: 4}}\n"
        "train: {epochs: 1, seed: 0, threads: 1}\n"
    )
    args = ["train", str(config), "--data-dir", str(folders)]
    assert main([*args, "--out", str(folders / "unbroken")]) == 0
    images = sorted((folders / "imagenet" / split).rglob("*.png"))
    image = images[len(images) // 2]
    good = image.read_bytes()
    image.write_bytes(b"not a png")
    capsys.readouterr()
    assert main([*args, "--out", str(folders / "run")]) == 2
    err = capsys.readouterr().err
    done = load_checkpoint(folders / "run" / "last.pt")["state"]["step_in_epoch"]
    saved = "epoch 1's training is" if split == "val" else f"epoch 1's first {done} steps are"
    assert f"{saved} saved: fix the data, then resume" in err and str(image) in err
    assert done == 3 if split == "val" else 0 < done < 3  # 3 steps of 3 images per epoch
    image.write_bytes(good)
    assert main([*args, "--out", str(folders / "run"), "--resume"]) == 0
    unbroken, resumed = (
        json.loads((folders / r / "metrics.json").read_text())["history"]
        for r in ("unbroken", "run")
    )
    assert resumed == [{**unbroken[0], "seconds": resumed[0]["seconds"]}]
