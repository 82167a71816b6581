"""Every shipped config loads, builds and trains one step on synthetic data of its shapes.

A recipe runs at most ``MAX_T`` time steps here (event data: as many frames): the structure
and every setting but T are the recipe's, and T only scales the cost of a step (the T-variants
of a pair share everything else; ``test_recipe_table.py`` checks each recipe's T)."""

from pathlib import Path

import pytest

from spikedistill.engine.config import load_config
from spikedistill.engine.trainer import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "spikedistill" / "recipes"  # = configs/
RECIPES = sorted(p for p in CONFIGS.rglob("*.yaml") if "recipe" not in p.name)
CLASSES = {"cifar10": 10, "cifar100": 100, "mnist": 10, "imagenet": 1000}
CLASSES |= {"cifar10dvs": 10, "dvsgesture": 11}
SHAPES = {"cifar10": [3, 32, 32], "cifar100": [3, 32, 32], "mnist": [1, 28, 28]}
SHAPES |= {"imagenet": [3, 224, 224]}
MAX_T = 2


def sample_shape(cfg, frames: int) -> list[int]:
    """The recipe's sample shape; event data: ``[frames, 2, size, size]``."""
    if cfg.data.name in ("cifar10dvs", "dvsgesture"):
        size = cfg.data.options.get("size", 48)
        return [frames, 2, size, size]
    return SHAPES[cfg.data.name]


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_runs_one_step_on_synthetic_data(path, tmp_path, monkeypatch):
    cfg = load_config(str(path))
    dataset = cfg.data.name
    batch = 4  # the smallest batch SASTC accepts
    steps = min(cfg.model.T, MAX_T)
    overrides = [
        "data.name=synthetic",
        f"data.options={{shape: {sample_shape(cfg, steps)}, num_classes: {CLASSES[dataset]}, "
        f"n_train: {batch}, n_test: {batch}}}",
        f"model.T={steps}",
        f"data.batch_size={batch}",
        f"data.eval_batch_size={batch}",
        "train.epochs=1",
        "teacher.checkpoint=null",  # a randomly initialised teacher of the right architecture
        "train.amp=none",  # bf16 convolutions are very slow on CPUs without bf16 units
    ]
    cfg = load_config(str(path), overrides)
    # no checkpoint files: up to 270 MB per recipe (vgg11_sastc), and tested elsewhere
    monkeypatch.setattr(Trainer, "save", lambda self, name: None)
    summary = Trainer(cfg, tmp_path / "run").fit()
    assert summary["epochs"] == 1 and summary["history"][0]["train_loss"] > 0
    if cfg.distill.method != "none":
        logged = summary["history"][0]  # every method's loss terms (brd: brd1, brd2, ...)
        for method in cfg.distill.method.split("+"):
            assert any(key.startswith(f"train_{method}") for key in logged), method
