"""SAMD and NLD (CKDSNN): values against independent loop / numpy computations, gradient
routing, option validation, and an end-to-end pass with real zoo models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from spikedistill.distill.base import METHODS, DistillBatch
from spikedistill.distill.kd import kd_loss
from spikedistill.distill.nld import NLD, nld_loss
from spikedistill.distill.samd import SAMD, samd_loss
from spikedistill.distill.taps import FeatureTaps, feature_map_path
from spikedistill.errors import ConfigError
from spikedistill.models import build_model
from spikedistill.spiking import unfold_time

# ---------------------------------------------------------------------------------------------
# Independent references (numpy, explicit loops, float64).


def ref_samd(fs, ft, zt, w, tau=2.0, scaling="batch"):
    """Per-sample SAMD terms (already divided by B), from the formulas in methods.md §3.3."""
    fs, ft, zt, w = (np.asarray(a, dtype=np.float64) for a in (fs, ft, zt, w))
    T, B, C, H, W = fs.shape
    a_s = np.zeros((B, H, W))
    a_t = np.zeros((B, H, W))
    for b in range(B):
        k = int(np.argmax(zt[b]))
        for h in range(H):
            for x in range(W):
                a_s[b, h, x] = sum(fs[t, b, c, h, x] for t in range(T) for c in range(C))
                a_t[b, h, x] = max(0.0, sum(w[k, c] * ft[b, c, h, x] for c in range(C)))

    def scale(a):
        out = np.empty_like(a)
        if scaling == "batch":
            s = a - a.min()
            return s / (s.max() + 1e-3)
        for b in range(a.shape[0]):
            s = a[b] - a[b].min()
            out[b] = s / (s.max() + 1e-3)
        return out

    def probs(m):
        e = np.exp(m.reshape(m.shape[0], -1) / tau)
        return e / e.sum(axis=1, keepdims=True) + 1e-10

    p_s, p_t = probs(scale(a_s)), probs(scale(a_t))
    terms = np.zeros(B)
    for b in range(B):
        for i in range(p_t.shape[1]):
            terms[b] += p_t[b, i] * (math.log(p_t[b, i]) - math.log(p_s[b, i]))
    return terms / B


def ref_nld(zs, zt, eps, tau, w, noise_scale):
    """NLD from methods.md §3.4 with explicit loops (numpy, float64)."""
    zs, zt, eps = (np.asarray(a, dtype=np.float64) for a in (zs, zt, eps))
    B, K = zs.shape
    total = 0.0
    for b in range(B):
        mu = zs[b].mean()
        sigma = math.sqrt(sum((zs[b, k] - mu) ** 2 for k in range(K)) / (K - 1))
        spread = sigma**2 if noise_scale == "variance" else sigma
        n = np.array([mu + eps[b, k] * spread for k in range(K)])

        def softmax(v):
            e = np.exp(v / tau - np.max(v / tau))
            return e / e.sum()

        q = w * softmax(zs[b]) + (1 - w) * softmax(n)
        p = softmax(zt[b])
        total += sum(p[k] * (math.log(p[k]) - math.log(q[k])) for k in range(K))
    return tau * tau * total / B


# ---------------------------------------------------------------------------------------------
# Fixtures.


def cam_teacher(channels=3, classes=5):
    """A minimal model with a CAM-able head (global pool + fc), for the method constructor."""
    model = nn.Module()
    model.layer1 = nn.Conv2d(1, channels, 1)
    model.head = nn.Sequential()
    model.head.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.head.add_module("flatten", nn.Flatten())
    model.head.add_module("fc", nn.Linear(channels, classes))
    model.stage_names = ["layer1"]
    return model.double()


def samd_batch(fs, ft, zt, teacher):
    B = ft.shape[0]
    return DistillBatch(
        y=torch.zeros(B, dtype=torch.long),
        student_logits=torch.zeros(B, zt.shape[1], dtype=fs.dtype),
        step_logits=torch.zeros(fs.shape[0], B, zt.shape[1], dtype=fs.dtype),
        teacher_logits=zt,
        student_features={"layer1": fs},
        teacher_features={"layer1": ft},
        teacher=teacher,
    )


@pytest.fixture
def tiny():
    g = torch.Generator().manual_seed(0)
    B, T, C, H, W, K = 2, 2, 3, 4, 4, 5
    fs = torch.rand(T, B, C, H, W, generator=g, dtype=torch.float64)
    ft = torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
    zt = torch.randn(B, K, generator=g, dtype=torch.float64)
    teacher = cam_teacher(C, K)
    with torch.no_grad():
        teacher.head.fc.weight.copy_(torch.randn(K, C, generator=g, dtype=torch.float64))
    return fs, ft, zt, teacher


# ---------------------------------------------------------------------------------------------
# SAMD.


def test_registered():
    assert METHODS.get("samd") is SAMD and METHODS.get("nld") is NLD


@pytest.mark.parametrize("scaling", ["batch", "sample"])
def test_samd_value_matches_loops(tiny, scaling):
    fs, ft, zt, teacher = tiny
    method = SAMD(teacher, teacher, scaling=scaling, weight=1.5)
    out = method(samd_batch(fs, ft, zt, teacher))
    assert set(out) == {"samd"}
    w = teacher.head.fc.weight.detach().numpy()
    expected = ref_samd(fs.numpy(), ft.numpy(), zt.numpy(), w, 2.0, scaling).sum()
    assert out["samd"].dtype == torch.float64
    assert out["samd"].item() == pytest.approx(1.5 * expected, rel=1e-10, abs=1e-15)
    assert expected > 0


def test_samd_tau_option(tiny):
    fs, ft, zt, teacher = tiny
    out = SAMD(teacher, teacher, tau=0.25)(samd_batch(fs, ft, zt, teacher))["samd"]
    w = teacher.head.fc.weight.detach().numpy()
    expected = ref_samd(fs.numpy(), ft.numpy(), zt.numpy(), w, 0.25, "batch").sum()
    assert out.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("scaling", ["batch", "sample"])
def test_samd_batch_scaling_couples_samples(tiny, scaling):
    fs, ft, zt, teacher = tiny
    w = teacher.head.fc.weight.detach()

    def first_term(fs_, ft_):
        # sample 0's term, from the reference (checked against the library's batch total)
        total = samd_loss(fs_, ft_, zt, w, 2.0, scaling).item()
        ref = ref_samd(fs_.numpy(), ft_.numpy(), zt.numpy(), w.numpy(), 2.0, scaling)
        assert total == pytest.approx(ref.sum(), rel=1e-10)
        return ref[0]

    base = first_term(fs, ft)
    fs2, ft2 = fs.clone(), ft.clone()
    fs2[:, 1] *= 5.0  # sample 1 gets a much larger student map range
    ft2[1] *= 5.0
    changed = first_term(fs2, ft2)
    if scaling == "batch":
        assert abs(changed - base) > 1e-6
    else:
        assert changed == pytest.approx(base, rel=1e-12)

    # library only: the batch loss is the mean of the single-sample losses iff per-sample
    whole = samd_loss(fs, ft, zt, w, 2.0, scaling).item()
    alone = [
        samd_loss(fs[:, i : i + 1], ft[i : i + 1], zt[i : i + 1], w, 2.0, scaling).item()
        for i in range(2)
    ]
    if scaling == "sample":
        assert alone[0] / 2 == pytest.approx(base, rel=1e-10)
        assert whole == pytest.approx(sum(alone) / 2, rel=1e-10)
    else:
        assert abs(whole - sum(alone) / 2) > 1e-6 * whole


def test_samd_gradient_only_to_student(tiny):
    fs, ft, zt, teacher = tiny
    fs = fs.clone().requires_grad_(True)
    ft = ft.clone().requires_grad_(True)
    zt = zt.clone().requires_grad_(True)
    method = SAMD(teacher, teacher)
    method(samd_batch(fs, ft, zt, teacher))["samd"].backward()
    assert fs.grad is not None and fs.grad.abs().sum() > 0
    assert ft.grad is None and zt.grad is None
    assert teacher.head.fc.weight.grad is None


@pytest.mark.parametrize("scaling", ["batch", "sample"])
def test_samd_gradcheck(tiny, scaling):
    fs, ft, zt, teacher = tiny
    w = teacher.head.fc.weight.detach()
    fs = fs.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: samd_loss(x, ft, zt, w, 0.5, scaling), (fs,), fast_mode=True
    )


def test_samd_heterogeneous_sizes(tiny):
    fs, ft, zt, teacher = tiny  # 4x4 maps
    w = teacher.head.fc.weight.detach()
    big_t = ft.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # 8x8, same 2x2 blocks
    method = SAMD(teacher, teacher)
    same = method(samd_batch(fs, ft, zt, teacher))["samd"]
    # the teacher CAM of a 2x-upsampled map, average-pooled back, is the 4x4 CAM
    assert method(samd_batch(fs, big_t, zt, teacher))["samd"].item() == pytest.approx(
        same.item(), rel=1e-10
    )
    # the student map larger: pooled down to the teacher's size (sum over T, C commutes)
    big_s = fs.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4).requires_grad_(True)
    loss = method(samd_batch(big_s, ft, zt, teacher))["samd"]
    assert loss.item() == pytest.approx(same.item(), rel=1e-10)
    loss.backward()
    assert big_s.grad is not None and torch.isfinite(big_s.grad).all()
    # non-divisible sizes on mixed axes still give a finite loss
    odd_t = torch.randn(2, 3, 6, 3, dtype=torch.float64)
    assert torch.isfinite(samd_loss(fs, odd_t, zt, w))


def test_samd_accepts_ann_student_and_float32(tiny):
    fs, ft, zt, teacher = tiny
    w = teacher.head.fc.weight.detach()
    one_step = samd_loss(fs[:1], ft, zt, w)
    assert samd_loss(fs[0], ft, zt, w).item() == pytest.approx(one_step.item(), rel=1e-12)
    low = samd_loss(fs.float(), ft.float(), zt.float(), w.float())
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(samd_loss(fs, ft, zt, w).item(), rel=1e-4)


def test_samd_config_errors(tiny):
    student = build_model("convnet3", 10, spiking=True, T=2, in_channels=1)
    hidden = build_model("resnet19", 10)
    assert hasattr(hidden.head, "fc1")
    with pytest.raises(ConfigError, match="head_hidden=None"):
        SAMD(student, hidden)
    plain = build_model("resnet19", 10, head_hidden=None)
    assert not hasattr(plain.head, "fc1")
    method = SAMD(student, plain)
    assert method.student_taps() == ["layer2"] and method.teacher_taps() == ["layer3"]
    assert list(method.parameters()) == [] and list(method.children()) == []
    with pytest.raises(ConfigError, match="global pooling"):
        SAMD(student, build_model("convnet3", 10, in_channels=1, head_pool=7))
    with pytest.raises(ConfigError, match="tau"):
        SAMD(student, plain, tau=0)
    with pytest.raises(ConfigError, match="scaling"):
        SAMD(student, plain, scaling="pixel")
    with pytest.raises(ConfigError, match="no module"):
        SAMD(student, plain, teacher_tap="nope")
    assert SAMD(student, plain, student_tap=0, teacher_tap="layer2").student_taps() == ["layer1"]
    # a teacher tap whose channels do not match head.fc
    fs, ft, zt, teacher = tiny
    wrong = samd_batch(fs, ft[:, :2], zt, teacher)
    with pytest.raises(ConfigError, match="channels"):
        SAMD(teacher, teacher)(wrong)


# ---------------------------------------------------------------------------------------------
# NLD.


def nld_batch(zs, zt):
    return DistillBatch(
        y=torch.zeros(zs.shape[0], dtype=torch.long),
        student_logits=zs,
        step_logits=zs.unsqueeze(0),
        teacher_logits=zt,
    )


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(1)
    zs = 3 * torch.randn(4, 7, generator=g, dtype=torch.float64)
    zt = 3 * torch.randn(4, 7, generator=g, dtype=torch.float64)
    return zs, zt


@pytest.mark.parametrize("noise_scale", ["variance", "std"])
@pytest.mark.parametrize("w", [0.9, 0.5, 0.0])
def test_nld_value_matches_hand_computation(logits, noise_scale, w):
    zs, zt = logits
    method = NLD(None, None, tau=2.0, noise_weight=w, weight=0.7, noise_scale=noise_scale)
    torch.manual_seed(123)
    out = method(nld_batch(zs, zt))
    assert set(out) == {"nld"}
    torch.manual_seed(123)
    eps = torch.randn(zs.shape, dtype=torch.float64)
    expected = ref_nld(zs.numpy(), zt.numpy(), eps.numpy(), 2.0, w, noise_scale)
    assert out["nld"].item() == pytest.approx(0.7 * expected, rel=1e-10)


def test_nld_uses_global_rng(logits):
    zs, zt = logits
    method = NLD(None, None)
    torch.manual_seed(5)
    a = method(nld_batch(zs, zt))["nld"]
    b = method(nld_batch(zs, zt))["nld"]
    torch.manual_seed(5)
    assert method(nld_batch(zs, zt))["nld"].item() == a.item()
    assert a.item() != b.item()


def test_nld_without_noise_is_kd(logits):
    zs, zt = logits
    for scale in ("variance", "std"):
        out = NLD(None, None, tau=3.0, noise_weight=1.0, noise_scale=scale)(nld_batch(zs, zt))
        assert out["nld"].item() == pytest.approx(kd_loss(zs, zt, 3.0).item(), rel=1e-12)


@pytest.mark.parametrize("noise_scale", ["variance", "std"])
def test_nld_gradients_through_mu_sigma(logits, noise_scale):
    zs, zt = logits
    eps = torch.randn(zs.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x = zs.clone().requires_grad_(True)
    # full derivative (nothing detached) against finite differences
    assert torch.autograd.gradcheck(
        lambda z: nld_loss(z, zt, eps, 2.0, 0.9, noise_scale), (x,), fast_mode=True
    )
    # with w = 0 the student only enters q through mu and sigma of the noise logits
    nld_loss(x, zt, eps, 2.0, 0.0, noise_scale).backward()
    assert x.grad is not None and x.grad.abs().sum() > 1e-6
    # ... and that gradient differs from one with sigma detached (which would be zero)
    y = zs.clone().requires_grad_(True)
    mu = y.mean(1, keepdim=True)
    sd = y.detach().std(1, keepdim=True)
    n = mu + eps * (sd**2 if noise_scale == "variance" else sd)
    log_q = torch.log_softmax(n / 2.0, 1)
    loss = torch.nn.functional.kl_div(
        log_q, torch.log_softmax(zt / 2.0, 1), reduction="batchmean", log_target=True
    )
    (4 * loss).backward()
    assert y.grad.abs().max() < 1e-12
    assert not torch.allclose(x.grad, y.grad)


def test_nld_teacher_gets_no_gradient(logits):
    zs, zt = logits
    zt = zt.clone().requires_grad_(True)
    zs = zs.clone().requires_grad_(True)
    NLD(None, None)(nld_batch(zs, zt))["nld"].backward()
    assert zt.grad is None and zs.grad is not None


def test_nld_degenerate_logits_are_finite():
    zs = torch.zeros(3, 5, requires_grad=True)  # sigma = 0 in every sample
    zt = torch.randn(3, 5)
    for scale in ("variance", "std"):
        loss = NLD(None, None, noise_scale=scale)(nld_batch(zs, zt))["nld"]
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(zs.grad).all()
        zs.grad = None


def test_nld_config_errors():
    with pytest.raises(ConfigError, match="tau"):
        NLD(None, None, tau=0.0)
    with pytest.raises(ConfigError, match="tau"):
        NLD(None, None, tau=-1.0)
    with pytest.raises(ConfigError, match="noise_weight"):
        NLD(None, None, noise_weight=1.5)
    with pytest.raises(ConfigError, match="noise_weight"):
        NLD(None, None, noise_weight=-0.1)
    with pytest.raises(ConfigError, match="noise_scale"):
        NLD(None, None, noise_scale="stdev")
    with pytest.raises(ConfigError, match="K >= 2"):
        NLD(None, None)(nld_batch(torch.zeros(2, 1), torch.zeros(2, 1)))


# ---------------------------------------------------------------------------------------------
# End to end with zoo models.


def test_end_to_end_convnet3():
    torch.manual_seed(0)
    T, B = 2, 4
    student = build_model("convnet3", 10, spiking=True, T=T, in_channels=1)
    teacher = build_model("convnet3", 10, in_channels=1).eval().requires_grad_(False)
    samd = SAMD(student, teacher)
    nld = NLD(student, teacher)
    s_path, t_path = feature_map_path(student), feature_map_path(teacher)
    assert samd.student_taps() == [s_path] and samd.teacher_taps() == [t_path]
    s_taps, t_taps = FeatureTaps(student, samd.student_taps()), FeatureTaps(teacher, [t_path])
    x, y = torch.randn(B, 1, 28, 28), torch.randint(0, 10, (B,))
    step_logits = student(x, per_step=True)
    with torch.no_grad():
        z_t = teacher(x)
    s_feats = {p: unfold_time(f, T) for p, f in s_taps.pop().items()}
    t_feats = {p: f.detach() for p, f in t_taps.pop().items()}
    s_taps.remove()
    t_taps.remove()
    assert s_feats[s_path].shape == (T, B, 64, 7, 7) and t_feats[t_path].shape == (B, 64, 7, 7)
    batch = DistillBatch(
        y=y,
        student_logits=step_logits.mean(0),
        step_logits=step_logits,
        teacher_logits=z_t,
        student_features=s_feats,
        teacher_features=t_feats,
        teacher=teacher,
    )
    losses = {**samd(batch), **nld(batch)}
    assert set(losses) == {"samd", "nld"}
    assert all(torch.isfinite(v) and v.item() >= 0 for v in losses.values())
    conv = student.stem[0]
    (g_samd,) = torch.autograd.grad(losses["samd"], conv.weight, retain_graph=True)
    assert torch.isfinite(g_samd).all() and g_samd.abs().sum() > 0
    sum(losses.values()).backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()
    assert conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
