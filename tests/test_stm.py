"""STM score (docs/methods.md §2.7): similarity kinds, hand-computed values of the paper's
definition (the default) and the former one (``variant="normalized"``), options, pairing
helpers."""

from __future__ import annotations

import math

import pytest
import torch

from spikedistill.errors import ConfigError
from spikedistill.metrics import layerwise_pairs, sastc_pairs, similarity, stm_score
from spikedistill.metrics.stm import STM_VARIANTS, StmVariant

# two samples, two features: teacher Gram = I, student Gram = [[2, 1], [1, 1]]
TEACHER = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
STUDENT = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
ONE = torch.ones(1, 1)
OLD = {"variant": "normalized"}  # the former default, selected explicitly


def test_similarity_kinds():
    x = torch.randn(5, 3, 2, 2)
    v = x.reshape(5, -1)
    torch.testing.assert_close(similarity(x, "raw"), v @ v.T)
    raw = v @ v.T
    normalized = similarity(x)  # default: rows of the raw Gram L2-normalised (SP / SemCKD)
    torch.testing.assert_close(normalized, raw / raw.norm(dim=1, keepdim=True))
    torch.testing.assert_close(normalized.norm(dim=1), torch.ones(5))
    unit = v / v.norm(dim=1, keepdim=True)
    torch.testing.assert_close(similarity(x, "cosine"), unit @ unit.T)
    with pytest.raises(ConfigError, match="similarity kind"):
        similarity(x, "euclid")


def test_identical_similarities_give_zero():
    torch.manual_seed(0)
    teacher = [torch.randn(6, 4, 3, 3), torch.randn(6, 8, 2, 2)]
    student = [a.unsqueeze(0).expand(3, *a.shape) for a in teacher]  # every step = teacher
    for kind in ("normalized", "cosine", "raw"):
        for distance in ("squared", "frobenius"):
            score = stm_score(student, teacher, layerwise_pairs(2, 2), kind, distance, **OLD)
            assert score == pytest.approx(0.0, abs=1e-12)
            # the paper's log scale: a perfect match is ln 0
            assert stm_score(student, teacher, layerwise_pairs(2, 2), kind, distance) == -math.inf
    # scale-invariant similarities: a scaled student still matches; the raw Gram does not
    scaled = [2.0 * s for s in student]
    eye = torch.eye(2)
    assert stm_score(scaled, teacher, eye, "normalized", **OLD) == pytest.approx(0, abs=1e-12)
    assert stm_score(scaled, teacher, eye, "cosine", **OLD) == pytest.approx(0, abs=1e-12)
    assert stm_score(scaled, teacher, eye, "raw", **OLD) > 0
    assert math.isfinite(stm_score(scaled, teacher, eye))  # paper: raw Grams, > 0 inside ln


def test_hand_computed_two_by_two():
    student, teacher = [STUDENT.unsqueeze(0)], [TEACHER]
    # raw: difference [[1, 1], [1, 0]], squared norm 3, divided by B^2 = 4
    assert stm_score(student, teacher, ONE, "raw", **OLD) == pytest.approx(0.75)
    root3 = math.sqrt(3) / 4
    assert stm_score(student, teacher, ONE, "raw", "frobenius", **OLD) == pytest.approx(root3)
    # normalized rows: [2, 1] / sqrt 5 and [1, 1] / sqrt 2 against [1, 0] and [0, 1]
    expected = (4 - 4 / math.sqrt(5) - math.sqrt(2)) / 4
    assert stm_score(student, teacher, ONE, **OLD) == pytest.approx(expected)
    # cosine: off-diagonal 1 / sqrt 2 on both sides of the diagonal, identity teacher
    assert stm_score(student, teacher, ONE, "cosine", **OLD) == pytest.approx(0.25)
    # the paper (default): one pair, one step, so just ln of the raw MSE
    assert stm_score(student, teacher, ONE) == pytest.approx(math.log(0.75))
    assert stm_score(student, teacher, ONE, distance="frobenius") == pytest.approx(math.log(root3))


def test_time_average_and_weights():
    # step 0 mismatched (0.75 raw), step 1 identical: the mean over T halves it
    student = [torch.stack([STUDENT, TEACHER])]
    teacher = [TEACHER]
    assert stm_score(student, teacher, ONE, "raw", **OLD) == pytest.approx(0.375)
    per_step = torch.tensor([[[1.0]], [[5.0]]])  # [T, S, N]
    assert stm_score(student, teacher, per_step, "raw", **OLD) == pytest.approx(0.375)
    per_step = torch.tensor([[[4.0]], [[1.0]]])
    assert stm_score(student, teacher, per_step, "raw", **OLD) == pytest.approx(1.5)
    # the paper's weighted mean: (4 * 0.75 + 1 * 0) / (4 + 1)
    assert stm_score(student, teacher, per_step) == pytest.approx(math.log(0.6))
    # two teacher layers, weights spread over them
    teacher2 = [TEACHER, STUDENT]
    w = torch.tensor([[0.25, 0.75]])
    old = stm_score([STUDENT.unsqueeze(0)], teacher2, w, "raw", **OLD)
    assert old == pytest.approx(0.25 * 0.75)
    paper = stm_score([STUDENT.unsqueeze(0)], teacher2, w)  # the weights already sum to 1
    assert paper == pytest.approx(math.log(0.25 * 0.75))


# Two samples, T = 2, two layer pairs (student layer k with teacher layer k). Grams G = F F^T
# of the flattened features (the student's per step):
#   teacher 1: [[1, 0], [0, 1]]               -> I
#   teacher 2: [[1, 0, 1], [0, 1, 0]]         -> [[2, 0], [0, 1]]
#   student 1, t=0: [[1, 1], [0, 1]]          -> [[2, 1], [1, 1]]
#   student 1, t=1: [[1, 0], [0, 1]]          -> I
#   student 2, t=0: [[1, 0, 1], [0, 1, 0]]    -> [[2, 0], [0, 1]]
#   student 2, t=1: [[1, 1, 0], [1, 0, 1]]    -> [[2, 1], [1, 2]]
# Raw MSE per (t, pair) = ||G_s - G_t||_F^2 / B^2:
#   (0, 1): diff [[1, 1], [1, 0]] -> 3/4;  (1, 1): 0;  (0, 2): 0;
#   (1, 2): diff [[0, 1], [1, 1]] -> 3/4.
HAND_TEACHER = [torch.eye(2), torch.tensor([[1.0, 0, 1], [0, 1, 0]])]
HAND_STUDENT = [
    torch.stack([torch.tensor([[1.0, 1], [0, 1]]), torch.eye(2)]),  # [T=2, B=2, 2]
    torch.stack([torch.tensor([[1.0, 0, 1], [0, 1, 0]]), torch.tensor([[1.0, 1, 0], [1, 0, 1]])]),
]


def test_paper_stm_by_hand():
    pairs = layerwise_pairs(2, 2)  # the identity
    # paper: mean over the 2 steps x 2 pairs, natural log: ln((3/4 + 0 + 0 + 3/4) / 4) = ln(3/8)
    paper = stm_score(HAND_STUDENT, HAND_TEACHER, pairs)
    assert paper == pytest.approx(math.log(3 / 8), rel=1e-12)
    assert paper == pytest.approx(-0.9808292530117262)
    assert stm_score(HAND_STUDENT, HAND_TEACHER, pairs, variant="paper") == paper
    assert STM_VARIANTS["paper"] == StmVariant("raw", "mean", "log")
    # its parts: no log; summed over the pairs (then mean over t) instead of averaged
    assert stm_score(HAND_STUDENT, HAND_TEACHER, pairs, scale="linear") == pytest.approx(3 / 8)
    summed = stm_score(HAND_STUDENT, HAND_TEACHER, pairs, reduce="sum", scale="linear")
    assert summed == pytest.approx((3 / 4 + 3 / 4) / 2)
    # per-step weights [T, S, N], a weighted mean: t=1 counts pair 2 three times:
    # (1 * 3/4 + 0 + 0 + 3 * 3/4) / (1 + 1 + 1 + 3) = 3 / 6
    w = torch.stack([torch.eye(2), torch.diag(torch.tensor([1.0, 3.0]))])
    assert stm_score(HAND_STUDENT, HAND_TEACHER, w) == pytest.approx(math.log(1 / 2))


def test_normalized_variant_by_hand():
    # Row-normalised Grams: both teacher Grams are diagonal -> I; student 1 at t=0 gives rows
    # [2, 1]/sqrt5, [1, 1]/sqrt2: squared distance to I = 4 - 4/sqrt5 - sqrt2; student 2 at
    # t=0 is diagonal (0); at t=1 rows [2, 1]/sqrt5, [1, 2]/sqrt5: 2 (2/sqrt5 - 1)^2 + 2/5
    # = 4 - 8/sqrt5. Divided by B^2 = 4, summed over the pairs, averaged over T = 2:
    #   (1/2) [(4 - 4/sqrt5 - sqrt2)/4 + (4 - 8/sqrt5)/4] = 1 - 3/(2 sqrt5) - sqrt2/8
    expected = 1 - 3 / (2 * math.sqrt(5)) - math.sqrt(2) / 8
    old = stm_score(HAND_STUDENT, HAND_TEACHER, layerwise_pairs(2, 2), variant="normalized")
    assert old == pytest.approx(expected, rel=1e-12)
    assert old == pytest.approx(0.1524029, rel=1e-6)
    assert STM_VARIANTS["normalized"] == StmVariant("normalized", "sum", "linear")
    # an explicit option overrides the variant's: raw Grams summed, linear
    raw = stm_score(HAND_STUDENT, HAND_TEACHER, torch.eye(2), "raw", variant="normalized")
    assert raw == pytest.approx(3 / 4)


def _former_stm(student, teacher, weights, kind="normalized", distance="squared"):
    """spikedistill's STM before the paper's became the default, verbatim in substance."""
    steps, batch = student[0].shape[:2]
    w = weights.detach().to(torch.float64)
    if w.dim() == 2:
        w = w.expand(steps, *w.shape)

    def gram(v):
        if kind == "cosine":
            v = torch.nn.functional.normalize(v, dim=-1)
        g = v @ v.transpose(-1, -2)
        return torch.nn.functional.normalize(g, dim=-1) if kind == "normalized" else g

    g_s = torch.stack(
        [gram(x.detach().to(torch.float64).reshape(steps, batch, -1)) for x in student], dim=1
    )
    g_t = torch.stack([gram(x.detach().to(torch.float64).reshape(batch, -1)) for x in teacher])
    sq = torch.stack([(g_s - g_t[j]).pow(2).sum(dim=(-1, -2)) for j in range(len(teacher))], dim=-1)
    dist = sq if distance == "squared" else sq.sqrt()
    return float((w * dist).sum() / (batch * batch * steps))


def test_normalized_variant_is_the_former_default_bit_for_bit():
    torch.manual_seed(3)
    student = [torch.rand(3, 5, 4, 3, 3).round(), torch.rand(3, 5, 6, 2, 2).round()]
    teacher = [torch.randn(5, 4, 4, 4), torch.randn(5, 8, 2, 2), torch.randn(5, 7)]
    alpha = torch.softmax(torch.randn(3, 5, 2, 3), dim=-1)
    for w in (layerwise_pairs(2, 3), sastc_pairs(alpha), sastc_pairs(alpha, "argmax")):
        for kind in ("normalized", "cosine", "raw"):
            for distance in ("squared", "frobenius"):
                new = stm_score(student, teacher, w, kind, distance, variant="normalized")
                assert new == _former_stm(student, teacher, w, kind, distance)
        assert stm_score(student, teacher, w, **OLD) == _former_stm(student, teacher, w)


def test_option_errors():
    student, teacher = [STUDENT.unsqueeze(0)], [TEACHER]
    with pytest.raises(ConfigError, match=r"STM variant 'sastc'.*paper, normalized"):
        stm_score(student, teacher, ONE, variant="sastc")
    with pytest.raises(ConfigError, match="STM reduction"):
        stm_score(student, teacher, ONE, reduce="max")
    with pytest.raises(ConfigError, match="STM scale"):
        stm_score(student, teacher, ONE, scale="log10")
    with pytest.raises(ConfigError, match="sum to 0"):
        stm_score(student, teacher, torch.zeros(1, 1))
    assert stm_score(student, teacher, torch.zeros(1, 1), **OLD) == 0.0  # the former: a sum


def test_shape_errors():
    student, teacher = [STUDENT.unsqueeze(0)], [TEACHER]
    with pytest.raises(ConfigError, match="weights must be"):
        stm_score(student, teacher, torch.ones(2, 1))
    with pytest.raises(ConfigError, match="teacher features"):
        stm_score(student, [torch.ones(3, 2)], ONE)
    with pytest.raises(ConfigError, match="distance"):
        stm_score(student, teacher, ONE, distance="l1")


def test_layerwise_pairs():
    torch.testing.assert_close(layerwise_pairs(3, 3), torch.eye(3))
    expected = torch.tensor([[0.0, 1, 0, 0], [0, 0, 0, 1]])
    torch.testing.assert_close(layerwise_pairs(2, 4), expected)
    torch.testing.assert_close(
        layerwise_pairs(4, 2), torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1]])
    )
    torch.testing.assert_close(layerwise_pairs(3, 2), torch.tensor([[1.0, 0], [0, 1], [0, 1]]))
    torch.testing.assert_close(layerwise_pairs(1, 3), torch.tensor([[0.0, 0, 1]]))
    for s, n in [(1, 1), (2, 5), (5, 2), (4, 4)]:
        pairs = layerwise_pairs(s, n)
        assert (pairs.sum(1) == 1).all() and pairs[-1, -1] == 1
    with pytest.raises(ConfigError):
        layerwise_pairs(0, 3)


def test_sastc_pairs():
    alpha = torch.tensor(  # [T=1, B=2, S=2, N=3]
        [[[[0.2, 0.5, 0.3], [0.6, 0.2, 0.2]], [[0.4, 0.1, 0.5], [0.4, 0.4, 0.2]]]]
    )
    mean = sastc_pairs(alpha)
    torch.testing.assert_close(mean, torch.tensor([[[0.3, 0.3, 0.4], [0.5, 0.3, 0.2]]]))
    torch.testing.assert_close(mean.sum(-1), torch.ones(1, 2))
    onehot = sastc_pairs(alpha, "argmax")
    torch.testing.assert_close(onehot, torch.tensor([[[0.0, 0, 1], [1, 0, 0]]]))
    with pytest.raises(ConfigError, match="mode"):
        sastc_pairs(alpha, "max")
    with pytest.raises(ConfigError, match=r"\[T, B, S, N\]"):
        sastc_pairs(alpha[0])
