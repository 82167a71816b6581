"""Every shipped config loads, builds and trains one step on synthetic data of its shapes."""

from pathlib import Path

import pytest

from spikedistill.engine.config import load_config
from spikedistill.engine.trainer import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPES = sorted(p for p in CONFIGS.rglob("*.yaml") if "recipe" not in p.name)
CLASSES = {"cifar10": 10, "cifar100": 100, "mnist": 10}
SHAPES = {"cifar10": "[3, 32, 32]", "cifar100": "[3, 32, 32]", "mnist": "[1, 28, 28]"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_runs_one_step_on_synthetic_data(path, tmp_path):
    cfg = load_config(str(path))
    dataset = cfg.data.name
    batch = 4  # the smallest batch SASTC accepts
    overrides = [
        "data.name=synthetic",
        f"data.options={{shape: {SHAPES[dataset]}, num_classes: {CLASSES[dataset]}, "
        f"n_train: {batch}, n_test: {batch}}}",
        f"data.batch_size={batch}",
        f"data.eval_batch_size={batch}",
        "train.epochs=1",
        "teacher.checkpoint=null",  # a randomly initialised teacher of the right architecture
        "train.amp=none",  # bf16 convolutions are very slow on CPUs without bf16 units
    ]
    cfg = load_config(str(path), overrides)
    summary = Trainer(cfg, tmp_path / "run").fit()
    assert summary["epochs"] == 1 and summary["history"][0]["train_loss"] > 0
    if cfg.distill.method != "none":
        terms = set(cfg.distill.method.split("+"))
        assert {f"train_{t}" for t in terms} <= set(summary["history"][0])
