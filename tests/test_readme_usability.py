"""What the README says about data, seeds, loaders and BRD pairs holds."""

import re
from pathlib import Path

import pytest
import torch
import yaml

from spikedistill.data import build_datasets, make_loader
from spikedistill.distill import FrozenTeacher
from spikedistill.distill.brd import BRD
from spikedistill.distill.objective import DistillObjective
from spikedistill.engine.config import load_config
from spikedistill.engine.trainer import Trainer
from spikedistill.errors import ConfigError
from spikedistill.models import build_model

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_distillation_example_names_the_teacher_the_mnist_config_trains():
    line = next(x for x in README.splitlines() if "checkpoint: runs/mnist-teacher/best.pt" in x)
    teacher = yaml.safe_load(line)["teacher"]
    trained = load_config(str(ROOT / "configs/mnist/teacher.yaml")).model
    assert (teacher["name"], teacher["options"]) == (trained.name, trained.options)
    assert not trained.spiking


def test_the_mnist_examples_use_neutral_data_paths_and_show_the_download():
    lines = [x for x in README.splitlines() if "spikedistill train configs/mnist/" in x]
    comments = [
        line
        for name in ("teacher", "snn_baseline")
        for line in (ROOT / f"configs/mnist/{name}.yaml").read_text().splitlines()
        if "--data-dir" in line
    ]
    assert lines and len(comments) == 2
    for line in lines + comments:
        assert "~/data" not in line and "../shared" not in line
        assert "--data-dir" not in line or "--data-dir DATA" in line
    assert any("data.download=true" in line for line in lines)
    assert not re.search(r"(?<![\w.])--download\b", README)


def test_train_seed_redraws_the_training_subset(tmp_path):
    def subset(seed):
        cfg = load_config(
            None,
            [
                "data.name=digits", "data.train_subset=60", "data.batch_size=20",
                "model.options={width: 4}", f"train.seed={seed}", "train.device=cpu",
            ],
        )  # fmt: skip
        return Trainer(cfg, tmp_path / f"run{seed}").train_set.images

    first, again, other = subset(0), subset(0), subset(1)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_digits_split_is_fixed_and_stratified():
    train, test, _ = build_datasets("digits", seed=0)
    train2, test2, _ = build_datasets("digits", seed=7)
    assert (len(train), len(test)) == (1442, 355)
    assert torch.equal(test.images, test2.images) and torch.equal(train.labels, train2.labels)
    per_class = torch.bincount(torch.cat([train.labels, test.labels]), minlength=10)
    assert torch.equal(torch.bincount(test.labels, minlength=10), per_class // 5)


def test_the_training_loader_drops_the_last_incomplete_batch():
    train, test, info = build_datasets("digits")
    assert len(make_loader(train, 100, train=True, info=info)) == 1442 // 100
    assert len(make_loader(test, 100, train=False, info=info)) == 4  # 355: nothing dropped
    with pytest.raises(ConfigError, match="dropped"):
        make_loader(train.subset(torch.arange(50)), 100, train=True, info=info)


def test_brd_accepts_a_teacher_whose_stages_have_other_depths():
    torch.manual_seed(0)
    student = build_model("resnet14", 10, spiking=True, T=2, neuron="ratebp").train()
    teacher = FrozenTeacher(build_model("resnet20", 10))
    assert len(student.layer1) != len(teacher.model.layer1)
    method = BRD(student, teacher.model)
    objective = DistillObjective(student, teacher, [method])
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    objective.build(student, x, y)
    _, terms = objective(student, x, y)
    assert {"brd1", "brd2"} <= set(terms) and all(torch.isfinite(v) for v in terms.values())
