r"""The LIF recurrence, written once for every Python path (``reference``'s in-place scans,
``compiled``'s traced ones, Rate-BP's record scan); the C++ kernels are tested against it.

Per step ``t``, with post-reset membrane ``u_{t-1}`` (``u_0 = 0``, passed as ``None``):

    charge:  v_t = k x_t + decay u_{t-1}          k = 1 - decay if decay_input else 1
    fire:    s_t = 1[v_t >= threshold]
    reset:   u_t = v_t - v_t s_t  (hard)   or   v_t - threshold s_t  (soft)

Each takes an optional ``out`` buffer: the reference writes into its own tensors, the compiled
scans let Inductor fuse the ops.

Rounding: every product and sum in the charge is rounded on its own, never a fused multiply-add
(ATen's ``add(alpha=)`` is one on AVX2 and CUDA, not on other CPUs; Inductor's C++ and the
``cpp`` kernels never fuse). Spikes within rounding of the threshold are thus the same bits on
every backend and machine.
"""

from __future__ import annotations

import torch

from ..config import NeuronConfig


def input_gain(cfg: NeuronConfig) -> float:
    """``k``: the input's scale in the charge."""
    return 1.0 - cfg.decay if cfg.decay_input else 1.0


def charge(
    x_t: torch.Tensor, u: torch.Tensor | None, cfg: NeuronConfig, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``v_t = k x_t + decay u_{t-1}`` (``u`` is ``None`` at the first step); ``decay u`` is
    rounded before the add (see the module docstring)."""
    k = input_gain(cfg)
    if u is None:
        if k != 1.0:
            return torch.mul(x_t, k, out=out)
        return x_t if out is None else out.copy_(x_t)
    decayed = torch.mul(u, cfg.decay)  # not add(alpha=decay): that may be one fused op
    if k != 1.0:
        return torch.mul(x_t, k, out=out).add_(decayed)
    return torch.add(x_t, decayed, out=out)


def fire(v: torch.Tensor, cfg: NeuronConfig, out: torch.Tensor | None = None) -> torch.Tensor:
    """``s_t = 1[v_t >= threshold]`` as 0/1 in the dtype of ``v`` (or of ``out``)."""
    if out is not None:
        return torch.ge(v, cfg.threshold, out=out)
    return (v >= cfg.threshold).to(v.dtype)


def reset(v: torch.Tensor, s: torch.Tensor, cfg: NeuronConfig) -> torch.Tensor:
    """``u_t``: to 0 where the neuron fired (hard) or down by the threshold (soft)."""
    if cfg.reset == "hard":
        return torch.addcmul(v, v, s, value=-1.0)
    return torch.sub(v, s, alpha=cfg.threshold)
