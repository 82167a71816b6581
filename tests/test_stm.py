"""STM score (methods.md §2.7): similarity kinds, hand-computed values, pairing helpers."""

from __future__ import annotations

import math

import pytest
import torch

from spikedistill.errors import ConfigError
from spikedistill.metrics import layerwise_pairs, sastc_pairs, similarity, stm_score

# two samples, two features: teacher Gram = I, student Gram = [[2, 1], [1, 1]]
TEACHER = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
STUDENT = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
ONE = torch.ones(1, 1)


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
            score = stm_score(student, teacher, layerwise_pairs(2, 2), kind, distance)
            assert score == pytest.approx(0.0, abs=1e-12)
    # scale-invariant similarities: a scaled student still matches; the raw Gram does not
    scaled = [2.0 * s for s in student]
    assert stm_score(scaled, teacher, torch.eye(2), "normalized") == pytest.approx(0, abs=1e-12)
    assert stm_score(scaled, teacher, torch.eye(2), "cosine") == pytest.approx(0, abs=1e-12)
    assert stm_score(scaled, teacher, torch.eye(2), "raw") > 0


def test_hand_computed_two_by_two():
    student, teacher = [STUDENT.unsqueeze(0)], [TEACHER]
    # raw: difference [[1, 1], [1, 0]], squared norm 3, divided by B^2 = 4
    assert stm_score(student, teacher, ONE, "raw") == pytest.approx(0.75)
    assert stm_score(student, teacher, ONE, "raw", "frobenius") == pytest.approx(math.sqrt(3) / 4)
    # normalized rows: [2, 1] / sqrt 5 and [1, 1] / sqrt 2 against [1, 0] and [0, 1]
    expected = (4 - 4 / math.sqrt(5) - math.sqrt(2)) / 4
    assert stm_score(student, teacher, ONE) == pytest.approx(expected)
    # cosine: off-diagonal 1 / sqrt 2 on both sides of the diagonal, identity teacher
    assert stm_score(student, teacher, ONE, "cosine") == pytest.approx(0.25)


def test_time_average_and_weights():
    # step 0 mismatched (0.75 raw), step 1 identical: the mean over T halves it
    student = [torch.stack([STUDENT, TEACHER])]
    teacher = [TEACHER]
    assert stm_score(student, teacher, ONE, "raw") == pytest.approx(0.375)
    per_step = torch.tensor([[[1.0]], [[5.0]]])  # [T, S, N]
    assert stm_score(student, teacher, per_step, "raw") == pytest.approx(0.375)
    per_step = torch.tensor([[[4.0]], [[1.0]]])
    assert stm_score(student, teacher, per_step, "raw") == pytest.approx(1.5)
    # two teacher layers, weights spread over them
    teacher2 = [TEACHER, STUDENT]
    w = torch.tensor([[0.25, 0.75]])
    assert stm_score([STUDENT.unsqueeze(0)], teacher2, w, "raw") == pytest.approx(0.25 * 0.75)


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
