"""Every shipped config loads, builds and trains one step on synthetic data of its shapes."""

from pathlib import Path

import pytest

from spikedistill.engine.config import load_config
from spikedistill.engine.trainer import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPES = sorted(p for p in CONFIGS.rglob("*.yaml") if "recipe" not in p.name)
CLASSES = {"cifar10": 10, "cifar100": 100, "mnist": 10, "imagenet": 1000}
CLASSES |= {"cifar10dvs": 10, "dvsgesture": 11}
SHAPES = {"cifar10": [3, 32, 32], "cifar100": [3, 32, 32], "mnist": [1, 28, 28]}
SHAPES |= {"imagenet": [3, 224, 224]}


def sample_shape(cfg) -> list[int]:
    """The recipe's sample shape; event data: ``[frames, 2, size, size]``."""
    if cfg.data.name in ("cifar10dvs", "dvsgesture"):
        size = cfg.data.options.get("size", 48)
        return [cfg.data.options["frames"], 2, size, size]
    return SHAPES[cfg.data.name]


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_runs_one_step_on_synthetic_data(path, tmp_path):
    cfg = load_config(str(path))
    dataset = cfg.data.name
    batch = 4  # the smallest batch SASTC accepts
    overrides = [
        "data.name=synthetic",
        f"data.options={{shape: {sample_shape(cfg)}, num_classes: {CLASSES[dataset]}, "
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
        logged = summary["history"][0]  # every method's loss terms (brd: brd1, brd2, ...)
        for method in cfg.distill.method.split("+"):
            assert any(key.startswith(f"train_{method}") for key in logged), method
