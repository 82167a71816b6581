import pytest
import torch
import torch.nn.functional as F

from spikedistill.distill import FrozenTeacher
from spikedistill.distill.brd import BRD
from spikedistill.distill.objective import DistillObjective
from spikedistill.engine.config import load_config
from spikedistill.engine.trainer import Trainer
from spikedistill.errors import ConfigError
from spikedistill.models import build_model
from spikedistill.ratebp import RateBackprop


def setup(mapping="affine", weights="exp", **kw):
    torch.manual_seed(0)
    student = build_model("resnet8", 10, spiking=True, T=3, neuron="ratebp").train()
    teacher = FrozenTeacher(build_model("resnet8", 10))
    method = BRD(student, teacher.model, mapping=mapping, weights=weights, **kw)
    objective = DistillObjective(student, teacher, [method])
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    objective.build(student, x, y)
    return student, teacher, method, objective, x, y


@pytest.mark.parametrize("mapping", ["identity", "affine", "conv1x1_bn"])
def test_hybrid_logits_are_the_teacher_tail_on_mapped_student_rates(mapping):
    student, teacher, method, objective, x, y = setup(mapping)
    with torch.no_grad():
        for m in method.mappings.modules():  # make the mappings non-trivial
            if isinstance(m, torch.nn.Conv2d) or hasattr(m, "scale"):
                for p in m.parameters():
                    p.add_(0.1 * torch.randn_like(p))
    batch = objective.distill_batch(student, x, y)
    hybrids = method.hybrid_logits(batch)
    t = teacher.model
    r1 = batch.student_features["layer1"].mean(0)  # block-1 rate [B, C, H, W]
    r2 = batch.student_features["layer2"].mean(0)
    expected = {
        1: t.head(t.layer3(t.layer2(method.mappings[0](r1)))),
        2: t.head(t.layer3(method.mappings[1](r2))),
    }
    assert set(hybrids) == {1, 2}
    for k in (1, 2):
        torch.testing.assert_close(hybrids[k], expected[k])


def test_loss_weights_and_gradient_through_the_frozen_teacher_tail():
    student, teacher, method, objective, x, y = setup(weights="exp", kd_weight=0.5, tau=2.0)
    _logits, terms = objective(student, x, y)
    batch = objective.distill_batch(student, x, y)
    z = method.hybrid_logits(batch)
    z_t = batch.teacher_logits
    for k, w in ((1, 0.25), (2, 0.5)):  # 2^-(N-k), N = 3
        log_q, p = F.log_softmax(z[k] / 2, 1), F.softmax(z_t / 2, 1)
        kl = (p * (p.log() - log_q)).sum(1).mean() * 4
        expected = w * (F.cross_entropy(z[k], y) + 0.5 * kl)
        torch.testing.assert_close(terms[f"brd{k}"], expected)
    terms["brd1"].backward()
    assert student.layer1[0].conv1.weight.grad.abs().sum() > 0  # through the teacher tail
    assert student.layer3[0].conv1.weight.grad is None  # block 3 is not in hybrid 1
    assert all(p.grad is None for p in teacher.parameters())
    assert method.mappings[0].scale.grad is not None


def test_uniform_weights_and_curriculum():
    student, _, method, objective, x, y = setup(weights="uniform", curriculum_epochs=4)
    assert method.hybrid_weight(1) == method.hybrid_weight(2) == 1.0
    active = []
    for epoch in range(5):
        objective.set_epoch(epoch)
        _, terms = objective(student, x, y)
        active.append(sorted(k for k in terms if k.startswith("brd")))
    # N - 1 = 2 hybrids dropped evenly over 4 epochs, shallowest first
    assert active == [["brd1", "brd2"]] * 2 + [["brd2"]] * 2 + [[]]


def test_init_from_teacher_and_architecture_checks():
    student = build_model("resnet8", 10, spiking=True, T=2)
    teacher = build_model("resnet8", 10)
    BRD(student, teacher, init_from_teacher=True)
    assert torch.equal(student.stem[0].weight, teacher.stem[0].weight)
    with pytest.raises(ConfigError, match="same architecture"):
        BRD(
            build_model("resnet8", 10, spiking=True),
            build_model("resnet8", 100),
            init_from_teacher=True,
        )
    with pytest.raises(ConfigError, match="same stages"):
        BRD(build_model("convnet3", 10, spiking=True), build_model("resnet8", 10))
    student, teacher = build_model("resnet8", 10, spiking=True), build_model("resnet14", 10)
    objective = DistillObjective(student, FrozenTeacher(teacher), [BRD(student, teacher)])
    objective.build(student, torch.randn(4, 3, 32, 32), torch.zeros(4, dtype=torch.long))
    wide = build_model("resnet8x4", 10)
    objective = DistillObjective(student, FrozenTeacher(wide), [BRD(student, wide)])
    with pytest.raises(ConfigError, match="differ after 'layer1'"):
        objective.build(student, torch.randn(4, 3, 32, 32), torch.zeros(4, dtype=torch.long))


def test_brd_under_rate_backprop_uses_the_rate_graph():
    student, _teacher, _method, objective, x, y = setup()
    view = RateBackprop(student)
    batch = objective.distill_batch(view, x, y)
    rate = batch.student_features["layer1"]
    assert rate.shape[0] == 1 and rate.requires_grad  # the rate-pass tensor, T-free
    # its value is the spike-pass rate of block 1's output neurons
    assert ((rate >= 0) & (rate <= 1)).all()
    _, terms = objective(view, x, y)
    sum(terms.values()).backward()
    assert student.layer1[0].conv1.weight.grad.abs().sum() > 0


BASE = """
data: {name: digits, batch_size: 64, eval_batch_size: 500}
model: {name: resnet8, spiking: true, T: 2, neuron: ratebp}
optim: {name: sgd, lr: 0.05, momentum: 0.9}
sched: {name: cosine}
train: {epochs: 2, seed: 1}
"""


def test_brd_kd_trains_with_rate_backprop_end_to_end(tmp_path):
    (tmp_path / "c.yaml").write_text(BASE)
    teacher_cfg = load_config(str(tmp_path / "c.yaml"), ["model.spiking=false"])
    Trainer(teacher_cfg, tmp_path / "teacher").fit()
    cfg = load_config(
        str(tmp_path / "c.yaml"),
        [
            "train.backprop=rate",
            "teacher.name=resnet8",
            f"teacher.checkpoint={tmp_path / 'teacher' / 'best.pt'}",
            "distill.method=brd+kd",
            "distill.options={brd: {init_from_teacher: true}}",
        ],
    )
    summary = Trainer(cfg, tmp_path / "student").fit()
    assert {"train_brd1", "train_brd2", "train_kd", "train_ce"} <= set(summary["history"][-1])
    assert summary["last_top1"] > 50
