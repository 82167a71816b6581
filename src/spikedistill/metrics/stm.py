"""STM: the spatio-temporal mismatch between student and teacher batch similarities.

For a pairing ``w [T, S, N]`` of student layers ``i`` with teacher layers ``j`` (per time step)
and ``D[t, i, j] = (1/B^2) || G_s^{t,i} - G_t^j ||_F^2`` (the mean squared difference of two
``B x B`` batch-similarity matrices of flattened per-sample features; the student's per step)::

    paper (default):  STM = ln( sum_{t,i,j} w[t, i, j] D[t, i, j] / sum_{t,i,j} w[t, i, j] )
    normalized:       STM = (1/T) sum_t sum_{i,j} w[t, i, j] D[t, i, j]

``"paper"`` is SASTC's Eq. (1) as docs/methods.md §2.7 reads it: raw Grams ``G = v v^T``, the
mean over the paired layers and time steps, natural log. ``"normalized"`` is spikedistill's former
default (row-normalised Grams, summed over the pairs, linear; docs/methods.md §2.7). Pairings:
``layerwise_pairs`` (layer-wise KD: student layer ``i`` with the teacher layer at the same
relative depth) and ``sastc_pairs`` (SASTC's attention, batch-averaged or its argmax). A
diagnostic only: computed without gradient, ideally on a fixed evaluation batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..errors import ConfigError

SIMILARITY_KINDS = ("normalized", "cosine", "raw")
DISTANCES = ("squared", "frobenius")
REDUCTIONS = ("mean", "sum")
SCALES = ("log", "linear")


class StmVariant(NamedTuple):
    """The three choices that make an STM definition (``stm_score``'s ``variant``)."""

    similarity: str  # a SIMILARITY_KINDS entry
    reduce: str  # "mean": weighted mean over (t, i, j); "sum": sum over pairs, mean over t
    scale: str  # "log": natural log of the reduced value; "linear": as is


STM_VARIANTS = {
    "paper": StmVariant("raw", "mean", "log"),  # SASTC Eq. (1), docs/methods.md §2.7
    "normalized": StmVariant("normalized", "sum", "linear"),  # the former default
}
STM_LABELS = {
    "paper": "ln of the mean raw-Gram MSE (SASTC paper)",
    "normalized": "sum of row-normalised-Gram MSEs (linear)",
}


def _choice(value: str, valid: Sequence[str], what: str) -> str:
    if value not in valid:
        raise ConfigError(f"unknown {what} {value!r} (valid: {', '.join(valid)})")
    return value


def stm_variant(name: str) -> StmVariant:
    """The ``StmVariant`` called ``name`` (``"paper"`` or ``"normalized"``)."""
    return STM_VARIANTS[_choice(name, tuple(STM_VARIANTS), "STM variant")]


def _similarity(v: torch.Tensor, kind: str) -> torch.Tensor:
    """``v [..., B, F]`` (flattened samples) -> ``[..., B, B]``."""
    if kind == "cosine":
        v = F.normalize(v, dim=-1)
    g = v @ v.transpose(-1, -2)
    if kind == "normalized":
        g = F.normalize(g, dim=-1)
    return g


def similarity(features: torch.Tensor, kind: str = "normalized") -> torch.Tensor:
    """The ``[B, B]`` batch-similarity matrix of ``features [B, ...]`` (each sample flattened).

    ``kind``:

    - ``"normalized"``: the raw Gram ``v v^T`` with each **row L2-normalised**, as in
      similarity-preserving KD (Tung & Mori) and SemCKD, so that values are comparable across
      layers of different widths (not symmetric in general);
    - ``"cosine"``: the Gram of L2-normalised samples (cosine similarities, symmetric);
    - ``"raw"``: the raw inner-product Gram ``v v^T`` (what SASTC's attention uses).
    """
    if kind not in SIMILARITY_KINDS:
        raise ConfigError(
            f"unknown similarity kind {kind!r} (valid: {', '.join(SIMILARITY_KINDS)})"
        )
    if features.dim() < 1:
        raise ConfigError("features must have a batch dimension")
    return _similarity(features.reshape(features.shape[0], -1), kind)


def layerwise_pairs(num_student: int, num_teacher: int) -> torch.Tensor:
    """One-to-one pairing ``[S, N]`` (weights 0/1) for layer-wise KD.

    ``S == N``: layer ``i`` with layer ``i``. Otherwise student layer ``i`` (which ends at
    relative depth ``(i + 1) / S``) is paired with the teacher layer that contains that depth,
    ``j = ceil((i + 1) N / S) - 1``; the last layers are always paired.
    """
    if num_student < 1 or num_teacher < 1:
        raise ConfigError(f"need at least one layer each, got S={num_student}, N={num_teacher}")
    pairs = torch.zeros(num_student, num_teacher)
    for i in range(num_student):
        j = -(-(i + 1) * num_teacher // num_student) - 1
        pairs[i, j] = 1.0
    return pairs


def sastc_pairs(attention: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """The SASTC pairing ``[T, S, N]`` from attention weights ``alpha [T, B, S, N]``.

    ``mode="mean"``: ``alpha`` averaged over the batch (rows sum to 1); ``"argmax"``: a one-hot
    row per ``(t, i)`` at the teacher layer with the largest batch-averaged weight.
    """
    if attention.dim() != 4:
        raise ConfigError(f"attention must be [T, B, S, N], got shape {tuple(attention.shape)}")
    mean = attention.detach().float().mean(dim=1)
    if mode == "mean":
        return mean
    if mode == "argmax":
        return F.one_hot(mean.argmax(dim=-1), mean.shape[-1]).to(mean.dtype)
    raise ConfigError(f"unknown sastc_pairs mode {mode!r} (valid: mean, argmax)")


def _checked_weights(
    student_features: Sequence[torch.Tensor],
    teacher_features: Sequence[torch.Tensor],
    weights: torch.Tensor,
) -> torch.Tensor:
    """``weights`` as float64 ``[T, S, N]``, after checking every shape."""
    s_num, t_num = len(student_features), len(teacher_features)
    if s_num == 0 or t_num == 0:
        raise ConfigError("stm_score needs at least one student and one teacher feature")
    steps, batch = student_features[0].shape[:2]
    for x in student_features:
        if x.dim() < 2 or tuple(x.shape[:2]) != (steps, batch):
            raise ConfigError(
                f"student features must all be [T, B, ...] with T={steps}, B={batch}; "
                f"got {tuple(x.shape)}"
            )
    for x in teacher_features:
        if x.shape[0] != batch:
            raise ConfigError(f"teacher features must be [B={batch}, ...]; got {tuple(x.shape)}")
    w = weights.detach().to(torch.float64)
    if w.dim() == 2:
        w = w.expand(steps, *w.shape)
    if tuple(w.shape) != (steps, s_num, t_num):
        raise ConfigError(
            f"weights must be [T, S, N] = [{steps}, {s_num}, {t_num}] or [S, N]; "
            f"got {tuple(weights.shape)}"
        )
    return w


def _pair_distances(
    student_features: Sequence[torch.Tensor],
    teacher_features: Sequence[torch.Tensor],
    similarity_kind: str,
    distance: str,
) -> torch.Tensor:
    """``||G_s^{t,i} - G_t^j||_F^2`` (or its root) for every ``(t, i, j)``: ``[T, S, N]``,
    float64, not yet divided by ``B^2``."""
    steps, batch = student_features[0].shape[:2]
    g_s = torch.stack(
        [
            _similarity(x.detach().to(torch.float64).reshape(steps, batch, -1), similarity_kind)
            for x in student_features
        ],
        dim=1,
    )  # [T, S, B, B]
    g_t = torch.stack(
        [
            _similarity(x.detach().to(torch.float64).reshape(batch, -1), similarity_kind)
            for x in teacher_features
        ]
    )  # [N, B, B]
    g_t = g_t.to(g_s.device)
    sq = torch.stack(
        [(g_s - g_t[j]).pow(2).sum(dim=(-1, -2)) for j in range(len(teacher_features))], dim=-1
    )  # [T, S, N]
    return sq if distance == "squared" else sq.sqrt()


@torch.no_grad()
def stm_score(
    student_features: Sequence[torch.Tensor],
    teacher_features: Sequence[torch.Tensor],
    weights: torch.Tensor,
    similarity_kind: str | None = None,
    distance: str = "squared",
    *,
    variant: str = "paper",
    reduce: str | None = None,
    scale: str | None = None,
) -> float:
    """STM of student features ``[T, B, ...]`` (one per student layer, time-first; an ANN
    student has ``T = 1``) against teacher features ``[B, ...]`` under the pairing ``weights``
    ``[T, S, N]`` or ``[S, N]`` (the same for every step).

    ``variant`` (``STM_VARIANTS``) sets ``similarity_kind``, ``reduce`` and ``scale``; any of
    them given explicitly overrides it. ``"paper"``: raw Grams, the ``w``-weighted mean over
    ``(t, i, j)`` (with 0/1 weights: the plain mean over time steps and paired layers), natural
    log (``-inf`` for a perfect match). ``"normalized"``: row-normalised Grams, summed over the
    pairs and averaged over ``t``, linear (the former default, bit-identical).
    ``distance="squared"`` uses ``||.||_F^2`` (the MSE with the ``1/B^2``), ``"frobenius"`` the
    plain Frobenius norm (same ``1/B^2`` factor). Computed in float64 without gradient.
    """
    preset = stm_variant(variant)
    similarity_kind = _choice(
        similarity_kind or preset.similarity, SIMILARITY_KINDS, "similarity kind"
    )
    reduce = _choice(reduce or preset.reduce, REDUCTIONS, "STM reduction")
    scale = _choice(scale or preset.scale, SCALES, "STM scale")
    _choice(distance, DISTANCES, "distance")
    w = _checked_weights(student_features, teacher_features, weights)
    steps, batch = student_features[0].shape[:2]
    dist = _pair_distances(student_features, teacher_features, similarity_kind, distance)
    w = w.to(dist.device)
    if reduce == "sum":
        value = float((w * dist).sum() / (batch * batch * steps))
    else:
        total = w.sum()
        if not total > 0:
            raise ConfigError("the STM's pairing weights sum to 0: no layer pair to average")
        value = float((w * dist).sum() / (batch * batch * total))
    if scale == "linear":
        return value
    return math.log(value) if value > 0 else float("-inf")
