"""SASTC (methods.md §2.3): the loss against an explicit loop-by-loop computation, gradients,
sizes, skipped batches, and an end-to-end run on zoo models with forward hooks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikedistill.distill.base import METHODS, DistillBatch
from spikedistill.distill.sastc import SASTC
from spikedistill.distill.taps import FeatureTaps
from spikedistill.errors import ConfigError
from spikedistill.metrics.stm import sastc_pairs, stm_score
from spikedistill.models import build_model
from spikedistill.spiking import unfold_time


class Stub(nn.Module):
    """A model whose tap paths are its children's names (``stage_names`` = all of them)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        for name in names:
            self.add_module(name, nn.Identity())
        self.stage_names = list(names)


T, B = 2, 8
# heterogeneous shapes: student 8x8 (larger than every teacher map, 8 -> 6 is non-integer)
# and 4x4 (smaller than 6x6, equal to 4x4, larger than 2x2); channel counts all differ
STUDENT_SHAPES = {"s0": (3, 8, 8), "s1": (5, 4, 4)}
TEACHER_SHAPES = {"a0": (4, 6, 6), "a1": (6, 4, 4), "a2": (2, 2, 2)}


def make_batch(n: int = B, steps: int = T, dtype=torch.float64, seed: int = 0) -> DistillBatch:
    g = torch.Generator().manual_seed(seed)
    s = {
        k: (0.3 * torch.randn(steps, n, *shape, generator=g, dtype=dtype)).requires_grad_()
        for k, shape in STUDENT_SHAPES.items()
    }
    a = {k: torch.randn(n, *shape, generator=g, dtype=dtype) for k, shape in TEACHER_SHAPES.items()}
    logits = torch.zeros(n, 3, dtype=dtype)
    return DistillBatch(
        y=torch.zeros(n, dtype=torch.long),
        student_logits=logits,
        step_logits=logits.expand(steps, n, 3),
        teacher_logits=logits,
        student_features=s,
        teacher_features=a,
    )


def make_method(batch_size: int = B, **options) -> SASTC:
    """The paper's loss (no warm-up) unless ``options`` say otherwise."""
    torch.manual_seed(0)
    options = {"warmup_epochs": 0, **options}
    method = SASTC(
        Stub(list(STUDENT_SHAPES)), Stub(list(TEACHER_SHAPES)), batch_size=batch_size, **options
    )
    with torch.no_grad():
        method.build(make_batch(n=batch_size))
    return method.double()


# -- an independent computation: explicit Python loops over t, b, i, j ------------------------


def dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (u.reshape(-1) * v.reshape(-1)).sum()


def mlp_by_hand(mlp: nn.Module, row: list[torch.Tensor]) -> torch.Tensor:
    x = torch.stack(row)
    w1, b1, w2, b2 = mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias
    hidden = torch.stack([torch.clamp(dot(w1[k], x) + b1[k], min=0) for k in range(len(b1))])
    out = torch.stack([dot(w2[k], hidden) + b2[k] for k in range(len(b2))])
    return out / torch.sqrt((out * out).sum())


def pool_by_hand(x: torch.Tensor, size: int, op) -> torch.Tensor:
    """Adaptive pooling of ``[C, H, W]`` to ``size x size``: window ``[floor(k H / s),
    ceil((k + 1) H / s))`` per output index."""
    h, w = x.shape[-2:]
    rows = []
    for oh in range(size):
        h0, h1 = (oh * h) // size, math.ceil((oh + 1) * h / size)
        cols = []
        for ow in range(size):
            w0, w1 = (ow * w) // size, math.ceil((ow + 1) * w / size)
            cols.append(op(x[:, h0:h1, w0:w1]))
        rows.append(torch.stack(cols, dim=-1))
    return torch.stack(rows, dim=-2)


def max_window(x: torch.Tensor) -> torch.Tensor:
    return x.amax(dim=(-1, -2))


def mean_window(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(-1, -2))


def regress_by_hand(reg: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Conv3x3 (or 1x1) -> BN (batch statistics of these ``B`` samples) -> ReLU -> Conv1x1."""
    conv1, bn, _, conv2 = reg
    z = F.conv2d(x, conv1.weight, padding=conv1.padding)
    mean = z.mean(dim=(0, 2, 3), keepdim=True)
    var = ((z - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
    z = (z - mean) / torch.sqrt(var + bn.eps)
    z = z * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
    z = torch.clamp(z, min=0)
    w2 = conv2.weight[:, :, 0, 0]  # [C_out, C_mid]
    return torch.einsum("oc,bchw->bohw", w2, z)


def loss_by_loops(method: SASTC, batch: DistillBatch) -> tuple[torch.Tensor, torch.Tensor]:
    s = [batch.student_features[p] for p in method.student_paths]
    a = [batch.teacher_features[p] for p in method.teacher_paths]
    steps, n = s[0].shape[:2]
    num_s, num_t = len(s), len(a)
    # teacher Grams and keys
    keys = [[None] * num_t for _ in range(n)]
    for j in range(num_t):
        for b in range(n):
            row = [dot(a[j][b], a[j][c]) for c in range(n)]
            keys[b][j] = mlp_by_hand(method.key[j], row)
    # student Grams per step, queries, attention
    alpha = torch.zeros(steps, n, num_s, num_t, dtype=torch.float64)
    for t in range(steps):
        for b in range(n):
            for i in range(num_s):
                row = [dot(s[i][t, b], s[i][t, c]) for c in range(n)]
                q = mlp_by_hand(method.query[i], row)
                energies = [dot(q, keys[b][j]) for j in range(num_t)]
                top = max(float(e.detach()) for e in energies)
                exps = [torch.exp(e - top) for e in energies]
                total = sum(exps)
                for j in range(num_t):
                    alpha[t, b, i, j] = exps[j] / total
    # pair distances
    loss = torch.zeros((), dtype=torch.float64)
    for i in range(num_s):
        for j in range(num_t):
            hi, hj = s[i].shape[-1], a[j].shape[-1]
            for t in range(steps):
                if hi > hj:
                    inp = torch.stack([pool_by_hand(s[i][t, b], hj, max_window) for b in range(n)])
                    target = a[j]
                else:
                    inp = s[i][t]
                    target = torch.stack([pool_by_hand(a[j][b], hi, mean_window) for b in range(n)])
                out = regress_by_hand(method.regressors[i][j], inp)
                for b in range(n):
                    d = ((out[b] - target[b]) ** 2).mean()
                    loss = loss + alpha[t, b, i, j] * d
    return method.weight * loss / (steps * n * num_s), alpha


def test_registered():
    assert METHODS.get("sastc") is SASTC


def test_loss_matches_explicit_loops():
    method = make_method(weight=3.0)
    batch = make_batch()
    got = method(batch)["sastc"]
    expected, alpha = loss_by_loops(method, batch)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    with torch.no_grad():
        torch.testing.assert_close(method.attention(batch), alpha, rtol=1e-9, atol=1e-9)


def test_attention_rows_sum_to_one_and_gradients_flow():
    method = make_method()
    batch = make_batch()
    with torch.no_grad():
        alpha = method.attention(batch)
    assert alpha.shape == (T, B, 2, 3)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(T, B, 2, dtype=torch.float64))
    assert (alpha > 0).all()

    method(batch)["sastc"].backward()
    for name, x in batch.student_features.items():
        assert x.grad is not None and x.grad.abs().sum() > 0, name
    for name, p in method.named_parameters():
        assert p.grad is not None, name
    # the key MLPs reach the loss only through the attention: not detached
    for mlp in [*method.query, *method.key]:
        assert mlp.fc1.weight.grad.abs().sum() > 0
        assert mlp.fc2.weight.grad.abs().sum() > 0
    for row in method.regressors:
        for reg in row:
            assert reg[0].weight.grad.abs().sum() > 0
            assert reg[3].weight.grad.abs().sum() > 0


def test_module_sizes_follow_batch_size_and_shapes():
    method = make_method(batch_size=12)
    for mlp in [*method.query, *method.key]:
        assert (mlp.fc1.in_features, mlp.fc1.out_features) == (12, 6)
        assert (mlp.fc2.in_features, mlp.fc2.out_features) == (6, 3)
    assert len(method.query) == 2 and len(method.key) == 3
    for i, (c_i, _, _) in enumerate(STUDENT_SHAPES.values()):
        for j, (c_j, _, _) in enumerate(TEACHER_SHAPES.values()):
            conv1, bn, _, conv2 = method.regressors[i][j]
            assert conv1.weight.shape == (2 * c_j, c_i, 3, 3) and conv1.bias is None
            assert conv1.padding == (1, 1)
            assert bn.num_features == 2 * c_j
            assert conv2.weight.shape == (c_j, 2 * c_j, 1, 1) and conv2.bias is None
    keys = method.state_dict().keys()
    assert {"query.1.fc1.weight", "key.2.fc2.bias", "regressors.1.2.0.weight"} <= set(keys)
    assert not any(k.startswith(("student", "teacher")) for k in keys)
    # the default is the batch size, not the reference code's 128
    default = SASTC(Stub(["s0"]), Stub(["a0"]))
    assert default.batch_size == 64 and default.embed_dim == 16
    assert default.weight == 100.0 and default.warmup_epochs == 5 and default.kernel == 3
    assert default.ramp == 0.2  # epoch 0 of the default warm-up, before any set_epoch
    assert SASTC(Stub(["s0"]), Stub(["a0"]), batch_size=64, mlp_dim=16).batch_size == 16


def test_small_batch_size_is_a_config_error():
    with pytest.raises(ConfigError, match="batch size too small for SASTC"):
        SASTC(Stub(["s0"]), Stub(["a0"]), batch_size=3)
    with pytest.raises(ConfigError, match="sastc mlp_dim must be >= 4, got 2"):
        SASTC(Stub(["s0"]), Stub(["a0"]), batch_size=64, mlp_dim=2)
    assert SASTC(Stub(["s0"]), Stub(["a0"]), batch_size=4).embed_dim == 1


def test_wrong_size_batch_gives_zero_loss():
    method = make_method()
    with pytest.warns(UserWarning, match="skips batches of 6"):
        loss = method(make_batch(n=6))["sastc"]
    assert loss.item() == 0.0
    loss.backward()  # part of the graph: the trainer can sum and backpropagate it
    assert all(p.grad is not None and p.grad.abs().sum() == 0 for p in method.parameters())
    with pytest.raises(ConfigError, match="batches of 8"):
        method.attention(make_batch(n=6))


def test_forward_before_build_and_bad_features():
    method = SASTC(Stub(list(STUDENT_SHAPES)), Stub(list(TEACHER_SHAPES)), batch_size=B)
    with pytest.raises(RuntimeError, match="build"):
        method(make_batch())
    bad = make_batch()
    bad.student_features["s0"] = bad.student_features["s0"][0]
    with pytest.raises(ConfigError, match="T, B, C, H, W"):
        method.build(bad)
    bad = make_batch()
    del bad.teacher_features["a1"]
    with pytest.raises(ConfigError, match="'a1' missing"):
        method.build(bad)


def test_zoo_models_end_to_end():
    torch.manual_seed(0)
    steps, n = 2, 8
    student = build_model("convnet3", 10, spiking=True, T=steps, in_channels=1)
    teacher = build_model("resnet8", 10, in_channels=1).eval()
    method = SASTC(student, teacher, batch_size=n, weight=800.0)
    assert method.student_taps() == ["layer1", "layer2"]
    assert method.teacher_taps() == ["layer1", "layer2", "layer3"]
    assert SASTC(student, teacher, student_taps=[-1], teacher_taps=["layer2"]).teacher_taps() == [
        "layer2"
    ]
    assert not any(m is student or m is teacher for m in method.modules())
    s_taps = FeatureTaps(student, method.student_taps())
    t_taps = FeatureTaps(teacher, method.teacher_taps())
    x, y = torch.randn(n, 1, 28, 28), torch.randint(0, 10, (n,))

    def distill_batch() -> DistillBatch:
        with torch.no_grad():
            teacher_logits = teacher(x)
        teacher_feats = {k: v.detach() for k, v in t_taps.pop().items()}
        step_logits = student(x, per_step=True)
        student_feats = {k: unfold_time(v, steps) for k, v in s_taps.pop().items()}
        return DistillBatch(
            y, step_logits.mean(0), step_logits, teacher_logits, student_feats, teacher_feats
        )

    with torch.no_grad():
        method.build(distill_batch())
    assert len(method.regressors) == 2 and len(method.regressors[0]) == 3
    params = list(student.parameters()) + list(method.parameters())
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    batch = distill_batch()
    assert batch.student_features["layer1"].shape == (steps, n, 32, 14, 14)
    assert batch.teacher_features["layer1"].shape == (n, 16, 28, 28)
    loss = method(batch)["sastc"] + F.cross_entropy(batch.student_logits, y)
    assert torch.isfinite(loss) and loss > 0
    optimizer.zero_grad()
    loss.backward()
    assert student.layer1[1].weight.grad.abs().sum() > 0
    optimizer.step()

    with torch.no_grad():
        alpha = method.attention(distill_batch())
    assert alpha.shape == (steps, n, 2, 3)
    student_feats = [batch.student_features[p].detach() for p in method.student_taps()]
    teacher_feats = [batch.teacher_features[p] for p in method.teacher_taps()]
    for mode in ("mean", "argmax"):
        score = stm_score(student_feats, teacher_feats, sastc_pairs(alpha, mode))
        assert math.isfinite(score) and score >= 0
    s_taps.remove()
    t_taps.remove()
