"""STM: the spatio-temporal mismatch between student and teacher batch similarities.

For a pairing ``w [T, S, N]`` of student layers ``i`` with teacher layers ``j`` (per time step)::

    STM = (1/T) sum_t sum_{i,j} w[t, i, j] * (1/B^2) * || G_s^{t,i} - G_t^j ||_F^2

with ``G`` the ``B x B`` batch-similarity matrix of a layer's flattened features (methods.md
§2.7; the paper's own definition was not available, so this is a reconstruction). Pairings:
``layerwise_pairs`` (layer-wise KD: student layer ``i`` with the teacher layer at the same
relative depth) and ``sastc_pairs`` (SASTC's attention, batch-averaged or its argmax). A
diagnostic only: computed without gradient, ideally on a fixed evaluation batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError

SIMILARITY_KINDS = ("normalized", "cosine", "raw")
DISTANCES = ("squared", "frobenius")


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


@torch.no_grad()
def stm_score(
    student_features: Sequence[torch.Tensor],
    teacher_features: Sequence[torch.Tensor],
    weights: torch.Tensor,
    similarity_kind: str = "normalized",
    distance: str = "squared",
) -> float:
    """STM of student features ``[T, B, ...]`` (one per student layer, time-first; an ANN
    student has ``T = 1``) against teacher features ``[B, ...]`` under the pairing ``weights``
    ``[T, S, N]`` or ``[S, N]`` (the same for every step).

    ``distance="squared"`` uses ``||.||_F^2`` as in the definition, ``"frobenius"`` the plain
    Frobenius norm (same ``1/B^2`` factor). Computed in float64 without gradient.
    """
    if distance not in DISTANCES:
        raise ConfigError(f"unknown distance {distance!r} (valid: {', '.join(DISTANCES)})")
    if similarity_kind not in SIMILARITY_KINDS:
        raise ConfigError(
            f"unknown similarity kind {similarity_kind!r} (valid: {', '.join(SIMILARITY_KINDS)})"
        )
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
        [(g_s - g_t[j]).pow(2).sum(dim=(-1, -2)) for j in range(t_num)], dim=-1
    )  # [T, S, N]
    dist = sq if distance == "squared" else sq.sqrt()
    return float((w.to(dist.device) * dist).sum() / (batch * batch * steps))
