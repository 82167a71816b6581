"""Checkpoints saved by other code load into the zoo and compute what the source computed.

Each test writes a checkpoint in a real layout (torchvision / timm ResNets, RepDistiller's and
mdistiller's trainers, DDP, Lightning), loads it with ``load_pretrained`` and compares the zoo
model's eval-mode outputs with the source model's on the same input.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from repdistiller_models import build as build_repdistiller
from spikedistill.checkpoint import mismatches
from spikedistill.distill.teacher import load_teacher
from spikedistill.errors import CheckpointError
from spikedistill.models import build_model, list_models
from spikedistill.models.key_layouts import LAYOUTS, RULES, ZOO_FAMILIES, detect_layout
from spikedistill.models.pretrained import load_pretrained
from third_party import import_timm, import_torchvision

CIFAR = (2, 3, 32, 32)
IMAGENET = (2, 3, 64, 64)  # small: the ImageNet ResNets pool globally, any size works


def trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` in eval mode with random BN affine parameters and running statistics (as
    after training: the outputs depend on every buffer)."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, 0.0, 0.2)
            nn.init.normal_(m.running_mean, 0.0, 0.2)
            nn.init.uniform_(m.running_var, 0.5, 2.0)
            m.num_batches_tracked.fill_(1000)
    return model.eval()


def assert_same_outputs(source: nn.Module, zoo: nn.Module, shape: tuple[int, ...]) -> None:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = source.eval()(x), zoo.eval()(x)
    assert expected.abs().max() > 1e-3  # not a trivial output
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def repdistiller_checkpoint(model: nn.Module, path) -> None:
    """RepDistiller's ``train_teacher.py``: ``{'epoch', 'model', 'best_acc', 'optimizer'}``."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    torch.save(
        {
            "epoch": 240,
            "model": model.state_dict(),
            "best_acc": 79.4,
            "optimizer": optimizer.state_dict(),
        },
        path,
    )


@pytest.mark.parametrize("depth", [18, 34])
def test_torchvision_resnet(tmp_path, depth):
    tv = import_torchvision()
    source = trained_like(getattr(tv.models, f"resnet{depth}")(num_classes=10))
    torch.save(source.state_dict(), tmp_path / "tv.pth")
    zoo = build_model(f"resnet{depth}_imagenet", 10)
    load_pretrained(zoo, tmp_path / "tv.pth", f"resnet{depth}_imagenet")
    assert_same_outputs(source, zoo, IMAGENET)


def test_timm_resnet18(tmp_path):
    timm = import_timm()
    source = trained_like(timm.create_model("resnet18", pretrained=False, num_classes=10))
    torch.save(source.state_dict(), tmp_path / "timm.pth")
    zoo = build_model("resnet18_imagenet", 10)
    load_pretrained(zoo, str(tmp_path / "timm.pth"), "resnet18_imagenet", what="teacher")
    assert_same_outputs(source, zoo, IMAGENET)


@pytest.mark.parametrize("name", ["resnet8x4", "resnet32x4", "resnet20", "wrn_16_2", "wrn_40_2"])
def test_repdistiller(tmp_path, name):
    source = trained_like(build_repdistiller(name, 100))
    repdistiller_checkpoint(source, tmp_path / "ckpt_epoch_240.pth")
    zoo = build_model(name, 100)
    load_pretrained(zoo, tmp_path / "ckpt_epoch_240.pth", name)
    assert_same_outputs(source, zoo, CIFAR)


def test_load_teacher_reads_a_repdistiller_checkpoint(tmp_path):
    source = trained_like(build_repdistiller("resnet8", 10))
    repdistiller_checkpoint(source, tmp_path / "resnet8_best.pth")
    teacher = load_teacher("resnet8", str(tmp_path / "resnet8_best.pth"), 10, 3)
    assert_same_outputs(source, teacher, CIFAR)


def test_ddp_and_lightning_prefixes(tmp_path):
    source = trained_like(build_repdistiller("resnet8", 10))
    state = source.state_dict()
    ddp = {f"module.{k}": v for k, v in state.items()}
    lightning = {
        "epoch": 3,
        "global_step": 1200,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": {f"model.{k}": v for k, v in state.items()},
        "optimizer_states": [],
        "lr_schedulers": [],
    }
    ddp_lightning = {"state_dict": {f"module.model.{k}": v for k, v in state.items()}}
    for layout in (ddp, {"model": ddp}, {"net": ddp}, lightning, ddp_lightning):
        torch.save(layout, tmp_path / "ckpt.pt")
        zoo = build_model("resnet8", 10)
        load_pretrained(zoo, tmp_path / "ckpt.pt", "resnet8")
        assert_same_outputs(source, zoo, CIFAR)
    # no zoo name (a model from outside the zoo): prefixes only, the keys as they are
    other = build_repdistiller("resnet8", 10)
    load_pretrained(other, lightning, arch=None)
    assert_same_outputs(source, other, CIFAR)
    with pytest.raises(CheckpointError, match="missing"):  # no renaming without a zoo name
        load_pretrained(build_model("resnet8", 10), lightning, arch=None)


def test_mdistiller_keeps_the_student_explicitly(tmp_path):
    """mdistiller's ``latest`` / ``best``: the DataParallel Distiller's state dict."""
    student = trained_like(build_repdistiller("resnet8x4", 100), seed=1)
    teacher = trained_like(build_repdistiller("resnet32x4", 100), seed=2)
    distiller = {f"module.student.{k}": v for k, v in student.state_dict().items()}
    distiller |= {f"module.teacher.{k}": v for k, v in teacher.state_dict().items()}
    distiller["module.conv_reg.weight"] = torch.zeros(4, 4, 1, 1)  # a loss module (FitNet)
    torch.save({"epoch": 240, "model": distiller, "best_acc": 77.0}, tmp_path / "best")
    zoo = build_model("resnet8x4", 100)
    with pytest.warns(UserWarning, match=r"left out teacher\.\* \(\d+ keys\), conv_reg\.\*"):
        load_pretrained(zoo, tmp_path / "best", "resnet8x4")
    assert_same_outputs(student, zoo, CIFAR)
    # student_best: {"model": student.state_dict()}, no prefix
    zoo = build_model("resnet8x4", 100)
    load_pretrained(zoo, {"model": student.state_dict()}, "resnet8x4")
    assert_same_outputs(student, zoo, CIFAR)


def test_wrong_architecture_fails_with_the_keys_and_the_readings_tried(tmp_path):
    source = build_repdistiller("resnet8x4", 100)
    repdistiller_checkpoint(source, tmp_path / "r.pth")
    with pytest.raises(CheckpointError) as err:
        load_pretrained(build_model("resnet32x4", 100), tmp_path / "r.pth", "resnet32x4", "teacher")
    text = str(err.value)
    assert "teacher checkpoint does not fit the architecture: missing" in text
    assert "'layer1.1.bn1.bias'" in text  # resnet32x4 has 5 blocks a stage, resnet8x4 1
    assert "as saved: zoo keys; as saved: torchvision_resnet -> resnet_cifar" in text
    with pytest.raises(CheckpointError, match=r"shape mismatches.*head\.fc\.weight") as err:
        load_pretrained(build_model("resnet8x4", 10), tmp_path / "r.pth", "resnet8x4")
    text = str(err.value)
    assert "'head.fc.weight' has 100 outputs in the checkpoint and 10 in the model" in text
    assert "maps onto" not in text  # the keys were renamed onto the zoo's: no note
    with pytest.raises(CheckpointError) as err:  # trained on RGB, the data is grayscale
        load_pretrained(
            build_model("resnet8x4", 100, in_channels=1), tmp_path / "r.pth", "resnet8x4"
        )
    assert (
        "The first layer 'stem.0.weight' takes 3 input channels in the checkpoint and 1 in the "
        "model: the checkpoint was trained on 3-channel inputs, the data here has 1"
    ) in str(err.value)
    # the right keys onto a zoo model no rule maps them to: nothing loads, the note says why
    tv = import_torchvision()
    state = tv.models.resnet18(num_classes=10).state_dict()
    with pytest.raises(CheckpointError, match=r"maps onto .*resnet18_imagenet.*not 'resnet18'"):
        load_pretrained(build_model("resnet18", 10), state, "resnet18")
    with pytest.raises(CheckpointError, match="no state dict"):
        load_pretrained(build_model("resnet8", 10), {"epoch": 3, "model": "resnet8"}, "resnet8")


def test_repdistiller_vgg_is_not_the_zoo_vgg_at_32px():
    """Renamed by hand, RepDistiller's VGG matches the zoo VGG at 64x64 (both pool after
    block3) but not at 32x32 (RepDistiller skips pool3): so no rule maps it."""
    source = trained_like(build_repdistiller("vgg13", 10))
    state = source.state_dict()
    assert detect_layout(state) == "repdistiller_vgg"
    with pytest.raises(CheckpointError, match=r"applies pool3 only to 64-pixel-high inputs"):
        load_pretrained(build_model("vgg13", 10), state, "vgg13")

    def zoo_key(key: str) -> str:
        if key.startswith("classifier."):
            return "head.fc." + key.removeprefix("classifier.")
        k, j, rest = re.fullmatch(r"block(\d)\.(\d+)\.(\w+)", key).groups()
        k, j = int(k), int(j)
        if k == 0 and j < 3:  # block0's first conv + BN are the zoo's stem
            return f"stem.{j}.{rest}"
        return f"layer{k + 1}.{j - 3 if k == 0 else j}.{rest}"

    zoo = build_model("vgg13", 10)
    zoo.load_state_dict({zoo_key(k): v for k, v in state.items()})
    assert_same_outputs(source, zoo, (2, 3, 64, 64))
    x = torch.randn(CIFAR)
    with torch.no_grad():
        assert not torch.allclose(source(x), zoo.eval()(x), atol=1e-3)


def test_every_rule_is_for_a_zoo_model_and_detection_is_unambiguous():
    zoo_names = set(list_models())
    assert set(ZOO_FAMILIES) <= zoo_names
    assert {family for _, family in RULES} <= set(ZOO_FAMILIES.values())
    samples = {
        "torchvision_resnet": build_repdistiller("resnet8").state_dict(),
        "repdistiller_wrn": build_repdistiller("wrn_16_1").state_dict(),
        "repdistiller_vgg": build_repdistiller("vgg8").state_dict(),
    }
    assert set(samples) == set(LAYOUTS)
    for name, state in samples.items():
        assert [n for n, lay in LAYOUTS.items() if lay.matches(state)] == [name]
    assert detect_layout(build_model("resnet8x4").state_dict()) is None  # zoo keys: no layout
    own = build_model("resnet8").state_dict()
    assert mismatches(own, own) == ([], [], [])


def test_a_student_starts_from_init_from_in_any_layout(tmp_path):
    """``model.init_from``: an SNN student starts from an ANN checkpoint of RepDistiller's
    (the ANN and SNN builds of a zoo model share their parameter names)."""
    from spikedistill.engine.config import load_config
    from spikedistill.engine.trainer import Trainer

    source = trained_like(build_repdistiller("resnet8", num_classes=10))
    repdistiller_checkpoint(source, tmp_path / "ckpt_epoch_240.pth")
    cfg = load_config(None, [
        "data.name=synthetic", "model.name=resnet8", "model.spiking=true", "model.T=2",
        f"model.init_from={tmp_path / 'ckpt_epoch_240.pth'}", "train.device=cpu",
    ])  # fmt: skip
    student = Trainer(cfg, tmp_path / "run").model
    expected = build_model("resnet8", 10)
    load_pretrained(expected, tmp_path / "ckpt_epoch_240.pth", arch="resnet8")
    for key, value in expected.state_dict().items():
        torch.testing.assert_close(student.state_dict()[key], value, msg=key)


def test_a_run_directory_is_a_checkpoint_source(tmp_path):
    """``teacher.checkpoint`` / ``model.init_from`` may name a spikedistill run folder: its
    ``best.pt`` (else ``last.pt``), whose weights sit under ``model``."""
    source = trained_like(build_model("resnet8", 10))
    (tmp_path / "run").mkdir()
    torch.save({"model": source.state_dict(), "config": {}}, tmp_path / "run/last.pt")
    model = build_model("resnet8", 10)
    load_pretrained(model, tmp_path / "run")
    assert_same_outputs(source, model, CIFAR)
    with pytest.raises(CheckpointError, match=r"no best\.pt or last\.pt"):
        load_pretrained(model, tmp_path)
