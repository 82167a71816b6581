"""NLD: Noise-smoothed Logits Distillation (CKDSNN, "A Closer Look at KD in SNN Training"),
following the reference code's HEAD formulas.

For student logits ``z_s`` and teacher logits ``z_t`` ``[B, K]``:

- per sample ``mu_b = mean_k z_s[b,k]`` and ``sigma_b = std_k z_s[b,k]`` (unbiased), not
  detached (the student also gets gradient through them; ``mu``'s contribution vanishes since
  a softmax ignores a per-sample shift, so in effect only ``sigma`` carries gradient);
- pure-noise logits ``n = mu + eps * sigma^2`` (``noise_scale="variance"``, the reference) or
  ``n = mu + eps * sigma`` (``"std"``), ``eps ~ N(0, 1)`` drawn with ``torch.randn`` from the
  global generator of the logits' device (so runs are reproducible and resumable through the
  trainer's RNG state);
- ``q = w softmax(z_s / tau) + (1 - w) softmax(n / tau)`` with ``w = noise_weight``;
- ``L = weight * tau^2 * (1/B) sum_b sum_k p_t (log p_t - log q)``, ``p_t = softmax(z_t / tau)``.

``log q`` is evaluated as ``logaddexp(log w + log_softmax(z_s/tau), log(1-w) +
log_softmax(n/tau))``, the same value as the reference's ``log(q)`` but without underflow.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..typed import Fraction, Positive, Weight, coerce
from .base import DistillBatch, DistillMethod, register_method

NoiseScale = Literal["variance", "std"]  # the noise scaled by sigma^2 or by sigma


def noise_logits(
    student_logits: torch.Tensor, eps: torch.Tensor, noise_scale: NoiseScale = "variance"
) -> torch.Tensor:
    """``mu + eps * sigma^2`` (``"variance"``) or ``mu + eps * sigma`` (``"std"``), with the
    per-sample mean and unbiased standard deviation of ``student_logits`` ``[B, K]``."""
    mu = student_logits.mean(dim=1, keepdim=True)
    var = student_logits.var(dim=1, keepdim=True, unbiased=True)
    if coerce(noise_scale, NoiseScale, "nld noise_scale") == "variance":
        return mu + eps * var
    # sqrt with a finite gradient where all logits of a sample are equal (var == 0)
    positive = var > 0
    sigma = torch.where(positive, torch.where(positive, var, 1).sqrt(), 0)
    return mu + eps * sigma


def nld_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    eps: torch.Tensor,
    tau: float = 2.0,
    noise_weight: float = 0.9,
    noise_scale: str = "variance",
) -> torch.Tensor:
    """The unweighted NLD loss for a given standard-normal draw ``eps`` (same shape as the
    logits): ``tau^2 KL(p_t || q)``, mean over the batch."""
    if student_logits.dim() != 2 or student_logits.shape[1] < 2:
        raise ConfigError(
            f"nld needs student logits [B, K] with K >= 2, got {tuple(student_logits.shape)}"
        )
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    z_s, z_t = student_logits.to(dtype), teacher_logits.detach().to(dtype)
    n = noise_logits(z_s, eps.to(dtype), noise_scale)
    log_w = math.log(noise_weight) if noise_weight > 0 else -math.inf
    log_1mw = math.log1p(-noise_weight) if noise_weight < 1 else -math.inf
    log_q = torch.logaddexp(
        F.log_softmax(z_s / tau, dim=1) + log_w, F.log_softmax(n / tau, dim=1) + log_1mw
    )
    log_p_t = F.log_softmax(z_t / tau, dim=1)
    kl = F.kl_div(log_q, log_p_t, reduction="batchmean", log_target=True)
    return kl * tau * tau


@register_method("nld")
class NLD(DistillMethod):
    """Options:

    - ``tau``: the softmax temperature (2 in the reference);
    - ``noise_weight``: ``w``, the weight of the student's own distribution in the mixture
      (0.9 in the reference config);
    - ``weight``: the term's weight;
    - ``noise_scale``: the noise ``eps * sigma^2`` (``variance``, the reference's) or
      ``eps * sigma`` (``std``).
    """

    name = "nld"

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        tau: Positive = 2.0,
        noise_weight: Fraction = 0.9,
        weight: Weight = 1.0,
        noise_scale: NoiseScale = "variance",
    ) -> None:
        super().__init__()
        self.tau, self.noise_weight = float(tau), float(noise_weight)
        self.weight, self.noise_scale = float(weight), noise_scale

    def forward(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        z_s = batch.student_logits
        dtype = torch.promote_types(z_s.dtype, torch.float32)
        eps = torch.randn(z_s.shape, device=z_s.device, dtype=dtype)
        loss = nld_loss(
            z_s, batch.teacher_logits, eps, self.tau, self.noise_weight, self.noise_scale
        )
        return {"nld": self.weight * loss}

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, noise_weight={self.noise_weight}, weight={self.weight}, "
            f"noise_scale={self.noise_scale!r}"
        )
