import math

import pytest
import torch
from torch import nn

from spikedistill.checkpoint import atomic_save, load_checkpoint, load_weights
from spikedistill.engine.config import OptimConfig, SchedConfig
from spikedistill.engine.optim import build_optimizer, build_scheduler, lr_factor
from spikedistill.errors import CheckpointError
from spikedistill.models import build_model
from spikedistill.models.pretrained import load_pretrained


def test_cosine_with_warmup_closed_form():
    cfg = SchedConfig(name="cosine", warmup_epochs=2)
    assert lr_factor(1.0, cfg, 10, 0.1) == pytest.approx(0.5)  # halfway through warmup
    assert lr_factor(2.0, cfg, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(6.0, cfg, 10, 0.1) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(10.0, cfg, 10, 0.1) == pytest.approx(0.0, abs=1e-12)


def test_step_and_multistep():
    assert lr_factor(65, SchedConfig(name="step", step_size=30, gamma=0.1), 100, 1) == (
        pytest.approx(0.01)
    )
    multi = SchedConfig(name="multistep", milestones=[150, 180, 210], gamma=0.1)
    assert lr_factor(149.9, multi, 240, 1) == 1.0
    assert lr_factor(180, multi, 240, 1) == pytest.approx(0.01)


def test_scheduler_steps_per_batch():
    model = nn.Linear(2, 2)
    opt = build_optimizer([model], OptimConfig(lr=0.4))
    sched = build_scheduler(opt, SchedConfig(name="cosine"), epochs=2, steps_per_epoch=5)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.4) and lrs[5] == pytest.approx(0.2)


def test_no_decay_for_bn_and_bias():
    model = build_model("convnet3", 10)
    opt = build_optimizer([model], OptimConfig(no_decay_bn_bias=True, weight_decay=1e-3))
    decayed, free = opt.param_groups
    assert all(p.ndim > 1 for p in decayed["params"]) and free["weight_decay"] == 0.0
    assert all(p.ndim == 1 for p in free["params"])


def test_atomic_save_and_weights_only_load(tmp_path):
    path = tmp_path / "ck.pt"
    atomic_save({"model": {"w": torch.ones(2)}, "epoch": 3}, path)
    assert load_checkpoint(path)["epoch"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary left behind


def test_truncated_and_foreign_checkpoints_raise_clear_errors(tmp_path):
    path = tmp_path / "ck.pt"
    atomic_save({"model": {"w": torch.ones(1000)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unreadable or corrupt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")  # refused by weights_only
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pt")


def test_teacher_layouts_and_architecture_mismatch():
    model = build_model("resnet8", 10)
    state = model.state_dict()
    for layout in (state, {"model": state}, {"state_dict": state}, {"epoch": 1, "model": state}):
        load_pretrained(model, layout)
    load_pretrained(model, {f"module.{k}": v for k, v in state.items()})
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_weights(build_model("resnet8", 100), state, "teacher")
    with pytest.raises(CheckpointError, match="missing"):
        load_weights(build_model("resnet14", 10), state, "teacher")
    with pytest.raises(CheckpointError, match="no state dict"):
        load_pretrained(model, {"epoch": 3})


def test_atomic_saves_get_the_mode_of_a_new_file(tmp_path):
    """Checkpoints are readable as any new file is (``mkstemp`` alone makes them private)."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        atomic_save({"x": torch.zeros(1)}, tmp_path / "best.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "best.pt").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]  # no temporary left


def test_unreadable_checkpoints_say_why_in_one_line(tmp_path):
    from pathlib import PurePosixPath

    (tmp_path / "config.yaml").write_text("model: {name: resnet8}\n")
    with pytest.raises(CheckpointError, match=r"corrupt: not a PyTorch checkpoint\?"):
        load_checkpoint(tmp_path / "config.yaml")
    torch.save({"path": PurePosixPath("a")}, tmp_path / "objects.pt")  # not a plain container
    with pytest.raises(CheckpointError, match="weights_only=True refuses") as err:
        load_checkpoint(tmp_path / "objects.pt")
    assert "\n" not in str(err.value) and "weights_only=False" not in str(err.value)
