"""SASTC: self-attentive spatio-temporal calibration (docs/methods.md §2).

For every time step ``t`` and sample ``b``, each student layer ``i`` spreads its feature loss
over all teacher layers ``j`` with attention weights ``alpha[t, b, i, j]``. The weights come from
query/key attention over batch-similarity vectors: rows of raw ``B x B`` Gram matrices of the
flattened features (per time step for the student, once for the teacher)::

    G_t^j = vec(A_j) vec(A_j)^T                 G_s^{t,i} = vec(S_i[t]) vec(S_i[t])^T
    k[b, j] = MLPk_j(G_t^j[b])                  q[t, b, i] = MLPq_i(G_s^{t,i}[b])
    alpha[t, b, i, :] = softmax_j <q[t, b, i], k[b, j]>        (no temperature)
    d[t, b, i, j] = mean_{c,h,w} (R_ij(pool(S_i[t]))[b] - pool(A_j)[b])^2
    L = weight * sum_{t,b,i,j} alpha * d / (T * B * S)

``MLP`` = Linear(B -> 2d) -> ReLU -> Linear(2d -> d) -> L2-normalise, ``d = B // 4``.
Spatial alignment: a student map larger than the teacher's is adaptive-max-pooled to the
teacher's size; otherwise the teacher map is adaptive-average-pooled to the student's. ``R_ij``
= Conv3x3(C_i -> 2 C_j) -> BN -> ReLU -> Conv1x1(2 C_j -> C_j), applied to each time step's
``[B, C_i, h, w]`` slice so that its BN sees ``B`` samples. The attention is not detached: the
MLPs learn from this loss (as in SemCKD).

Differences from the reference code (docs/methods.md §2.8), on purpose: the MLP input size is the
per-device batch size (the reference hard-wires 128 and then only runs at a per-process batch
of 128); student Grams are computed on the features' device.

Cost (docs/methods.md §2.10): the ``S x N`` regressors run at every time step, and their
multiply-adds set the price: 0.82x the student's own for resnet19 <- resnet19 on CIFAR, 7.9x
for the MNIST convnet3 <- resnet8. ``regressor="conv1x1"`` cuts them to 0.18x and 1.6x.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..typed import Bounds, Count, MinItems, Weight
from .base import DistillBatch, DistillMethod, register_method
from .taps import TapSpec, resolve_taps


class SimilarityEmbed(nn.Module):
    """Embeds rows of a ``B x B`` similarity matrix: ``l2norm(W2 relu(W1 g + b1) + b2)``.

    Input ``[..., B]``, output ``[..., d]`` with unit L2 norm along the last dimension.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, 2 * out_dim)
        self.fc2 = nn.Linear(2 * out_dim, out_dim)

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fc2(F.relu(self.fc1(g))), dim=-1)


#: regressor name -> its first convolution's kernel size
REGRESSOR_KERNELS = {
    "conv3x3": 3,  # the paper's
    "conv1x1": 1,  # ours: 9x fewer multiply-adds in the first conv
}
RegressorKind = Literal[tuple(REGRESSOR_KERNELS)]  # the option's values: the table's names
EmbedDim = Annotated[int, Bounds(ge=1)]
MlpDim = Annotated[int, Bounds(ge=4)]  # the embedding has B // 4 >= 1 dimensions
Taps = Annotated[Sequence[TapSpec], MinItems(1)]


def regressor(c_in: int, c_out: int, kernel: int = 3) -> nn.Sequential:
    """``Conv_k(c_in -> 2 c_out, no bias) -> BN -> ReLU -> Conv1x1(2 c_out -> c_out, no bias)``."""
    return nn.Sequential(
        nn.Conv2d(c_in, 2 * c_out, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(2 * c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(2 * c_out, c_out, 1, bias=False),
    )


def batch_gram(x: torch.Tensor, lead: int) -> torch.Tensor:
    """Raw inner-product Gram of the flattened samples: ``x [*L, B, ...] -> [*L, B, B]``,
    ``lead = len(L)``."""
    v = x.flatten(lead + 1)
    return v @ v.transpose(-1, -2)


@register_method("sastc")
class SASTC(DistillMethod):
    """SASTC loss ``{"sastc": weight * L_sastc}`` (docs/methods.md §2.3).

    Options:

    - ``batch_size``: the per-device batch size ``B`` (the Gram rows have ``B`` entries);
    - ``student_taps`` / ``teacher_taps``: the student's / the teacher's tapped features
      (stage indices or module paths); ``None`` = every stage of the zoo model. The reference
      takes the teacher's feature list without its first and last entries (``[1:-1]``), i.e.
      the outputs of the intermediate stages; the stages of our zoo models are exactly those
      (no stem, no logits);
    - ``weight``: the loss weight ``beta``. 100 is the reference code's default, its published
      run scripts all use 800;
    - ``mlp_dim``: input size of the query/key MLPs, ``None`` = ``batch_size``. It must equal
      the per-device batch size: only batches of exactly ``mlp_dim`` samples are distilled
      (the reference hard-wires 128, which breaks any other batch size). Set it when
      ``batch_size`` is a global batch split over several processes;
    - ``embed_dim``: the similarity embedding's size ``d``, ``None`` = ``B // 4`` (the
      reference's);
    - ``warmup_epochs``: ramp ``weight`` up linearly: epoch ``e`` (0-based) uses
      ``weight * min((e + 1) / warmup_epochs, 1)``; 0 = the full weight from the start (the
      paper's, and its recipes'). The default 5 is ours, chosen from
      ``benchmarks/results/sastc_study.md``: without it, 100 is no better than KD alone and
      800 diverges;
    - ``regressor``: ``conv3x3`` (the paper's ``R_ij``) or ``conv1x1`` (ours, cheaper: a 1x1
      first convolution).

    Batches of another size (an incomplete last batch) contribute a zero loss, as the
    reference skips them; the trainer drops incomplete batches anyway. The modules are created
    by ``build`` on the features' device (in the default dtype: call ``.double()`` etc. to
    change it).
    """

    name = "sastc"

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        batch_size: int = 64,
        student_taps: Taps | None = None,
        teacher_taps: Taps | None = None,
        weight: Weight = 100.0,
        mlp_dim: MlpDim | None = None,
        embed_dim: EmbedDim | None = None,
        warmup_epochs: Count = 5,
        regressor: RegressorKind = "conv3x3",
    ) -> None:
        super().__init__()
        size = batch_size if mlp_dim is None else mlp_dim  # mlp_dim is checked >= 4
        if not isinstance(size, int) or isinstance(size, bool) or size < 4:
            raise ConfigError(
                "batch size too small for SASTC: needs >= 4 per device "
                f"(the similarity embedding has B // 4 dimensions), got B={size!r}"
            )
        self.batch_size = size
        self.embed_dim = size // 4 if embed_dim is None else embed_dim
        self.weight = float(weight)
        self.warmup_epochs = warmup_epochs
        self.ramp = 1.0  # the weight's factor this epoch (set_epoch)
        self.set_epoch(0)
        self.kernel = REGRESSOR_KERNELS[regressor]
        self.student_paths = resolve_taps(student, student_taps)
        self.teacher_paths = resolve_taps(teacher, teacher_taps)
        if not self.student_paths or not self.teacher_paths:
            raise ConfigError("sastc needs at least one student tap and one teacher tap")
        self.query = nn.ModuleList()
        self.key = nn.ModuleList()
        self.regressors = nn.ModuleList()  # regressors[i][j]: student layer i -> teacher layer j
        self._warned_skip = False

    def student_taps(self) -> list[str]:
        return list(self.student_paths)

    def teacher_taps(self) -> list[str]:
        return list(self.teacher_paths)

    def set_epoch(self, epoch: int) -> None:
        if self.warmup_epochs:
            self.ramp = min((epoch + 1) / self.warmup_epochs, 1.0)

    @property
    def built(self) -> bool:
        return len(self.query) > 0

    # -- construction ---------------------------------------------------------------------
    def _features(self, batch: DistillBatch) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        try:
            s = [batch.student_features[p] for p in self.student_paths]
            a = [batch.teacher_features[p] for p in self.teacher_paths]
        except KeyError as err:
            missing = err.args[0]
            raise ConfigError(f"sastc: feature tap {missing!r} missing from the batch") from None
        for path, x in zip(self.student_paths, s, strict=True):
            if x.dim() != 5:
                raise ConfigError(
                    f"sastc needs student maps [T, B, C, H, W]; tap {path!r} has {tuple(x.shape)}"
                )
        for path, x in zip(self.teacher_paths, a, strict=True):
            if x.dim() != 4:
                raise ConfigError(
                    f"sastc needs teacher maps [B, C, H, W]; tap {path!r} has {tuple(x.shape)}"
                )
        return s, a

    def build(self, batch: DistillBatch) -> None:
        """Create the S query MLPs, N key MLPs and S x N regressors from the real shapes."""
        s, a = self._features(batch)
        device = s[0].device
        b, d = self.batch_size, self.embed_dim
        self.query = nn.ModuleList(SimilarityEmbed(b, d) for _ in s).to(device)
        self.key = nn.ModuleList(SimilarityEmbed(b, d) for _ in a).to(device)
        self.regressors = nn.ModuleList(
            nn.ModuleList(regressor(si.shape[2], aj.shape[1], self.kernel) for aj in a) for si in s
        ).to(device)

    # -- loss -----------------------------------------------------------------------------
    def _check_built(self) -> None:
        if not self.built:
            raise RuntimeError("sastc: call build(batch) before the first forward")

    def _attention(self, s: list[torch.Tensor], a: list[torch.Tensor]) -> torch.Tensor:
        """``alpha [T, B, S, N]``: softmax over teacher layers of query . key."""
        keys = torch.stack(
            [mlp(batch_gram(x, 0)) for mlp, x in zip(self.key, a, strict=True)], dim=1
        )  # [B, N, d]
        queries = torch.stack(
            [mlp(batch_gram(x, 1)) for mlp, x in zip(self.query, s, strict=True)], dim=2
        )  # [T, B, S, d]
        energy = torch.einsum("tbsd,bnd->tbsn", queries, keys)
        return energy.softmax(dim=-1)

    def attention(self, batch: DistillBatch) -> torch.Tensor:
        """The attention weights ``alpha [T, B, S, N]`` (rows sum to 1 over the teacher layers);
        for diagnostics and the STM score (works under ``no_grad``)."""
        self._check_built()
        s, a = self._features(batch)
        if s[0].shape[1] != self.batch_size:
            raise ConfigError(
                f"sastc attention needs batches of {self.batch_size} samples, got {s[0].shape[1]}"
            )
        return self._attention(s, a)

    def _distances(self, s: list[torch.Tensor], a: list[torch.Tensor]) -> torch.Tensor:
        """``d [T, B, S, N]``: per-sample MSE between regressed student and teacher maps."""
        steps = s[0].shape[0]
        targets: dict[tuple[int, int, int], torch.Tensor] = {}  # teacher avg-pooled, per size
        rows = []
        for i, si in enumerate(s):
            pooled: dict[tuple[int, int], torch.Tensor] = {}  # student max-pooled, per size
            row = []
            for j, aj in enumerate(a):
                if si.shape[-2] > aj.shape[-2]:
                    size = (aj.shape[-2], aj.shape[-1])
                    if size not in pooled:
                        flat = F.adaptive_max_pool2d(si.flatten(0, 1), size)
                        pooled[size] = flat.view(*si.shape[:3], *size)
                    student, target = pooled[size], aj
                else:
                    student, size = si, (si.shape[-2], si.shape[-1])
                    if (j, *size) not in targets:
                        targets[(j, *size)] = F.adaptive_avg_pool2d(aj, size)
                    target = targets[(j, *size)]
                reg = self.regressors[i][j]
                out = torch.stack([reg(student[t]) for t in range(steps)])  # [T, B, C_j, h, w]
                row.append((out - target).pow(2).mean(dim=(2, 3, 4)))  # [T, B]
            rows.append(torch.stack(row, dim=-1))  # [T, B, N]
        return torch.stack(rows, dim=2)  # [T, B, S, N]

    def forward(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        self._check_built()
        s, a = self._features(batch)
        steps, n = s[0].shape[:2]
        if n != self.batch_size:
            if not self._warned_skip:
                warnings.warn(
                    f"sastc skips batches of {n} samples (its MLPs take batches of exactly "
                    f"{self.batch_size}): zero loss for them (warned once)",
                    stacklevel=2,
                )
                self._warned_skip = True
            zero = sum(p.sum() for p in self.parameters()) * 0.0
            return {"sastc": zero}
        alpha = self._attention(s, a)
        dist = self._distances(s, a)
        loss = (alpha * dist).sum() / (steps * n * len(s))
        return {"sastc": self.weight * self.ramp * loss}
