import pytest
import torch
import torch.nn.functional as F

from spikedistill.distill import FrozenTeacher
from spikedistill.distill.brd import BRD
from spikedistill.distill.brd_branches import resolve_branches
from spikedistill.distill.kd import kd_loss
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


def branch_setup(student_name="resnet14", teacher_name="resnet14", **kw):
    torch.manual_seed(0)
    student = build_model(student_name, 10, spiking=True, T=2, neuron="ratebp").train()
    teacher = FrozenTeacher(build_model(teacher_name, 10))
    method = BRD(student, teacher.model, **kw)
    objective = DistillObjective(student, teacher, [method])
    x, y = torch.randn(6, 3, 32, 32), torch.randint(0, 10, (6,))
    objective.build(student, x, y)
    with torch.no_grad():  # non-trivial mappings
        for p in method.mappings.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return student, teacher.model, method, objective, x, y


def test_branch_inside_a_stage_runs_the_rest_of_the_teacher_stage():
    # resnet14: 3 stages of 2 blocks; branches given out of order are sorted by depth
    student, t, method, objective, x, y = branch_setup(branches=["layer2.0", "layer1"])
    assert [b.path for b in method.branches] == ["layer1", "layer2.0"]
    batch = objective.distill_batch(student, x, y)
    r = batch.student_features["layer2.0"].mean(0)  # rate of the first block of stage 2
    assert r.shape == (6, 32, 16, 16)
    expected = t.head(t.layer3(t.layer2[1](method.mappings[1](r))))
    z = method.hybrid_logits(batch)
    torch.testing.assert_close(z[2], expected)
    r1 = batch.student_features["layer1"].mean(0)
    torch.testing.assert_close(z[1], t.head(t.layer3(t.layer2(method.mappings[0](r1)))))
    _, terms = objective(student, x, y)
    assert method.hybrid_weight(1) == 0.25 and method.hybrid_weight(2) == 0.5  # K = 2
    terms["brd2"].backward()
    assert student.layer2[0].conv1.weight.grad.abs().sum() > 0  # the branch's own block
    assert student.layer1[1].conv1.weight.grad.abs().sum() > 0  # and the blocks before it
    assert student.layer2[1].conv1.weight.grad is None  # the block after the branch: not
    assert all(p.grad is None for p in t.parameters())
    student.zero_grad(set_to_none=True)
    _, terms = objective(RateBackprop(student), x, y)  # under Rate-BP, through the rate graph
    terms["brd2"].backward()
    assert student.layer1[0].conv1.weight.grad.abs().sum() > 0


def old_stage_boundary_terms(method, batch):
    """BRD's terms as computed before ``branches`` (a hybrid per stage boundary)."""
    stages, teacher, terms = method.stages, batch.teacher, {}
    for k in range(1, len(stages)):
        h = method.mappings[k - 1](batch.student_features[stages[k - 1]].mean(0))
        for name in stages[k:]:
            h = getattr(teacher, name)(h)
        z = teacher.head(h)
        loss = method.kd_weight * kd_loss(z, batch.teacher_logits, method.tau)
        loss = loss + F.cross_entropy(z, batch.y)
        terms[f"brd{k}"] = method.weight * 2.0 ** -(len(stages) - k) * loss
    return terms


def test_default_branches_are_the_stage_boundaries_as_before():
    student, _, method, objective, x, y = branch_setup()
    _, _, explicit, *_ = branch_setup(branches=["layer2", "layer1"])
    assert [b.path for b in method.branches] == ["layer1", "layer2"]
    batch = objective.distill_batch(student, x, y)
    old = old_stage_boundary_terms(method, batch)
    new = method(batch)
    assert set(new) == set(old) == {"brd1", "brd2"}
    for k in old:
        assert torch.equal(new[k], old[k])
        assert torch.equal(explicit(batch)[k], new[k])  # same seed: same mappings


def test_branches_inside_a_vgg_stage_end_at_its_activations():
    from spikedistill.models.vgg import VGG

    torch.manual_seed(0)
    student = VGG([[8, 8], [16, 16]], spiking=True, T=2)
    teacher = VGG([[8, 8], [16, 16]])
    teacher.eval()
    with pytest.raises(ConfigError) as err:
        BRD(student, teacher, branches=["layer2.1"])  # a BatchNorm, not a block boundary
    assert "valid: layer1.2, layer1, layer2.2, layer2.5, layer2" in str(err.value)
    method = BRD(student, teacher, branches=["layer2.2"])
    objective = DistillObjective(student, FrozenTeacher(teacher), [method])
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    objective.build(student, x, y)
    batch = objective.distill_batch(student, x, y)
    h = method.mappings[0](batch.student_features["layer2.2"].mean(0))
    for layer in list(teacher.layer2)[3:]:  # conv, BN, ReLU of the stage's second block
        h = layer(h)
    torch.testing.assert_close(method.hybrid_logits(batch)[1], teacher.head(h))


def test_bad_branch_paths():
    student, teacher = build_model("resnet8", 10, spiking=True), build_model("resnet8", 10)
    with pytest.raises(ConfigError, match=r"valid: layer1.0, layer1, layer2.0, layer2, layer3"):
        BRD(student, teacher, branches=["layer2.1"])
    with pytest.raises(ConfigError, match="brd branches must have at least 1 item"):
        BRD(student, teacher, branches=[])
    with pytest.raises(ConfigError, match=r"name at least one block boundary .* valid: layer1\.0"):
        resolve_branches(student, teacher, [])
    with pytest.raises(ConfigError, match="twice"):
        BRD(student, teacher, branches=["layer1", "layer1"])
    with pytest.raises(ConfigError, match="one boundary twice"):  # its only block ends layer1
        BRD(student, teacher, branches=["layer1.0", "layer1"])
    deeper = build_model("resnet14", 10, spiking=True)  # 2 blocks a stage, the teacher 1
    with pytest.raises(ConfigError, match=r"\['layer1.1'\] are not block boundaries of both"):
        BRD(deeper, teacher, branches=["layer1.1"])
