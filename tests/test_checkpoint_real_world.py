"""Teacher checkpoints as other trainers write them: timm's ``train.py`` and DeiT (their
``args`` as an ``argparse.Namespace``, EMA weights beside the plain ones), numpy scalars for
metrics, and heads trained for another number of classes."""

from __future__ import annotations

import argparse
import datetime
import warnings
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from repdistiller_models import build as build_repdistiller
from spikedistill.checkpoint import load_checkpoint, safe_globals
from spikedistill.distill.teacher import load_teacher
from spikedistill.engine.config import load_config
from spikedistill.errors import CheckpointError
from spikedistill.models import build_model
from spikedistill.models.pretrained import load_pretrained
from test_checkpoint_layouts import CIFAR, IMAGENET, assert_same_outputs, trained_like
from third_party import import_timm, import_torchvision

TIMM_ARGS = argparse.Namespace(model="resnet18", lr=0.05, epochs=300, model_ema=True, amp=False)


def differs(a: nn.Module, b: nn.Module, shape: tuple[int, ...]) -> bool:
    x = torch.randn(shape)
    with torch.no_grad():
        return not torch.allclose(a.eval()(x), b.eval()(x), atol=1e-3)


def test_timm_train_py_checkpoint_with_args_and_ema(tmp_path):
    """timm's ``CheckpointSaver``: ``{epoch, arch, state_dict, optimizer, version, args,
    metric, state_dict_ema}``; the plain weights load (as timm's own loader does)."""
    timm = import_timm()
    plain = trained_like(timm.create_model("resnet18", num_classes=10), seed=1)
    averaged = trained_like(timm.create_model("resnet18", num_classes=10), seed=2)
    assert differs(plain, averaged, IMAGENET)
    saved = {
        "epoch": 299,
        "arch": "resnet18",
        "state_dict": plain.state_dict(),
        "optimizer": torch.optim.SGD(plain.parameters(), lr=0.05).state_dict(),
        "version": 2,
        "args": TIMM_ARGS,
        "metric": np.float64(71.5),
        "state_dict_ema": averaged.state_dict(),
    }
    torch.save(saved, tmp_path / "model_best.pth.tar")
    loaded = load_checkpoint(tmp_path / "model_best.pth.tar")
    assert loaded["args"] == TIMM_ARGS and loaded["metric"] == 71.5
    zoo = build_model("resnet18_imagenet", 10)
    with pytest.warns(UserWarning, match=r"plain weights; left aside the EMA .*'state_dict_ema'"):
        load_pretrained(zoo, tmp_path / "model_best.pth.tar", "resnet18_imagenet", "teacher")
    assert_same_outputs(plain, zoo, IMAGENET)
    zoo = build_model("resnet18_imagenet", 10)
    load_pretrained(zoo, tmp_path / "model_best.pth.tar", "resnet18_imagenet", ema=True)
    assert_same_outputs(averaged, zoo, IMAGENET)
    # from a config: teacher.ema
    cfg = load_config(None, ["teacher.ema=true"])
    teacher = load_teacher("resnet18_imagenet", str(tmp_path / "model_best.pth.tar"), 10, 3,
                           ema=cfg.teacher.ema)  # fmt: skip
    assert_same_outputs(averaged, teacher.model, IMAGENET)


def test_deit_checkpoint_with_model_ema(tmp_path):
    """DeiT's ``main.py``: ``{model, optimizer, lr_scheduler, epoch, model_ema, scaler, args}``."""
    plain = trained_like(build_repdistiller("resnet8", 10), seed=1)
    averaged = trained_like(build_repdistiller("resnet8", 10), seed=2)
    saved = {"model": plain.state_dict(), "epoch": 299, "model_ema": averaged.state_dict()}
    torch.save({**saved, "scaler": {}, "args": TIMM_ARGS}, tmp_path / "checkpoint.pth")
    zoo = build_model("resnet8", 10)
    with pytest.warns(UserWarning, match=r"'model_ema'"):
        load_pretrained(zoo, tmp_path / "checkpoint.pth", "resnet8")
    assert_same_outputs(plain, zoo, CIFAR)
    load_pretrained(zoo, tmp_path / "checkpoint.pth", "resnet8", ema=True)
    assert_same_outputs(averaged, zoo, CIFAR)


@pytest.mark.parametrize("key", ["state_dict_ema", "model_ema", "ema"])
def test_ema_only_checkpoints_load_their_ema_weights(tmp_path, key):
    averaged = trained_like(build_repdistiller("resnet8", 10), seed=3)
    # timm's ModelEmaV2 keeps the model as ``module``: its state dict's keys say ``module.``
    state = {f"module.{k}": v for k, v in averaged.state_dict().items()}
    torch.save({"epoch": 10, key: state, "best_acc1": np.float32(90.5)}, tmp_path / "ema.pth")
    zoo = build_model("resnet8", 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing was left aside: no warning
        load_pretrained(zoo, tmp_path / "ema.pth", "resnet8")
    assert_same_outputs(averaged, zoo, CIFAR)


def test_no_weights_names_the_keys_found(tmp_path):
    state = build_model("resnet8", 10).state_dict()
    with pytest.raises(CheckpointError, match=r"found top-level keys 'epoch', 'arch', 'params'"):
        load_pretrained(build_model("resnet8", 10), {"epoch": 3, "arch": "r8", "params": state})
    with pytest.raises(CheckpointError, match=r"holds no EMA weights.*top-level keys 'model'"):
        load_pretrained(build_model("resnet8", 10), {"model": state}, "resnet8", ema=True)
    torch.save([state], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"no state dict .*; found a list\)"):
        load_pretrained(build_model("resnet8", 10), tmp_path / "list.pt")


def test_numpy_scalars_load_under_numpy_1_and_2_names(tmp_path):
    """``{'state_dict', 'best_acc1': np.float64, ...}``; numpy 1 pickles its scalars as
    ``numpy.core.multiarray.scalar``, numpy 2 as ``numpy._core.multiarray.scalar``."""
    source = trained_like(build_repdistiller("resnet8", 10))
    metrics = {"best_acc1": np.float64(76.25), "epoch": np.int64(240), "lr": np.float32(0.5)}
    metrics |= {"step": np.int32(7), "improved": np.bool_(True), "acc5": np.float16(0.25)}
    torch.save({"state_dict": source.state_dict(), **metrics}, tmp_path / "np.pth")
    with (
        zipfile.ZipFile(tmp_path / "np.pth") as src,
        zipfile.ZipFile(tmp_path / "np1.pth", "w") as out,
    ):
        for info in src.infolist():  # the pickle's GLOBALs are text lines: rename in place
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            out.writestr(info, data)
    assert b"numpy.core.multiarray" in zipfile.ZipFile(tmp_path / "np1.pth").read(
        next(n for n in zipfile.ZipFile(tmp_path / "np1.pth").namelist() if n.endswith(".pkl"))
    )
    for name in ("np.pth", "np1.pth"):
        loaded = load_checkpoint(tmp_path / name)
        assert {k: (type(v), v) for k, v in loaded.items() if k in metrics} == {
            k: (type(v), v) for k, v in metrics.items()
        }
        zoo = build_model("resnet8", 10)
        load_pretrained(zoo, tmp_path / name, "resnet8")
        assert_same_outputs(source, zoo, CIFAR)


def test_the_allowlist_is_for_one_load_only(tmp_path):
    """No process-wide change: ``torch.load`` still refuses the file after spikedistill read it."""
    torch.save({"model": {"w": torch.ones(1)}, "args": TIMM_ARGS}, tmp_path / "args.pth")
    assert load_checkpoint(tmp_path / "args.pth")["args"].lr == 0.05
    assert argparse.Namespace in safe_globals()
    assert set(torch.serialization.get_safe_globals()).isdisjoint(safe_globals())
    with pytest.raises(Exception, match=r"argparse\.Namespace"):
        torch.load(tmp_path / "args.pth", weights_only=True)


@pytest.mark.parametrize(
    "other",
    [np.arange(3), nn.Linear(2, 2), datetime.date(2024, 5, 1)],
    ids=["ndarray", "module", "date"],
)
def test_other_objects_are_refused_with_a_way_forward(tmp_path, other):
    """YOLO-style ``{'ema': <a pickled module>}`` and other objects stay refused: one line saying
    how to re-save the weights, never advice to turn the check off."""
    torch.save({"model": {"w": torch.ones(1)}, "ema": other}, tmp_path / "obj.pt")
    with pytest.raises(CheckpointError) as err:
        load_pretrained(nn.Linear(1, 1), tmp_path / "obj.pt")
    text = str(err.value)
    assert "weights_only=True refuses" in text and "re-save just its weights" in text
    assert "torch.save(ckpt['model'], 'weights.pt')" in text and "load_pretrained" in text
    assert "\n" not in text and "weights_only=False" not in text


def test_a_cifar100_head_into_a_10_class_torchvision_model_says_num_classes(tmp_path):
    """Key names that are the model's own: no note about other layouts, a hint on the head."""
    tv = import_torchvision()
    torch.save({"state_dict": tv.models.resnet18(num_classes=100).state_dict()}, tmp_path / "a.pt")
    model = build_model("torchvision:resnet18", 10, in_channels=3)
    with pytest.raises(CheckpointError) as err:
        load_pretrained(model, tmp_path / "a.pt", "torchvision:resnet18", "teacher")
    text = str(err.value)
    assert "2 shape mismatches (e.g. fc.weight: checkpoint (100, 512) vs model (10, 512))" in text
    assert "'fc.weight' has 100 outputs in the checkpoint and 10 in the model" in text
    assert "num_classes=10" in text and "maps onto" not in text and "\n" not in text
    # a resnet34 file: the same names plus more blocks, still no note
    torch.save(tv.models.resnet34(num_classes=10).state_dict(), tmp_path / "r34.pt")
    with pytest.raises(CheckpointError) as err:
        load_pretrained(model, tmp_path / "r34.pt", "torchvision:resnet18")
    assert "unexpected" in str(err.value) and "'layer1.2." in str(err.value)
    assert "maps onto" not in str(err.value) and "outputs in the checkpoint" not in str(err.value)
    # torchvision keys into a zoo model with other names: the note still helps there
    with pytest.raises(CheckpointError, match=r"maps onto .*resnet18_imagenet.*not 'resnet18'"):
        load_pretrained(build_model("resnet18", 10), tmp_path / "r34.pt", "resnet18")
