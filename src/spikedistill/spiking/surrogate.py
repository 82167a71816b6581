r"""Surrogate derivatives of the Heaviside spike function.

The forward pass always fires ``s = H(x) = 1[x >= 0]`` with ``x = v - threshold``; only the
backward pass uses a smooth stand-in ``sg(x) = ds/dx``. Every surrogate takes one sharpness
parameter ``alpha`` with SpikingJelly's convention (its class in brackets):

- ``triangle``:  ``max(0, alpha - alpha^2 |x|)``, width ``1/alpha``, peak ``alpha``; the "ZIF"
  of the tdBN code with ``gamma = 1/alpha`` [``PiecewiseQuadratic``];
- ``sigmoid``:   ``alpha * sig(alpha x) * (1 - sig(alpha x))``, peak ``alpha/4`` [``Sigmoid``];
- ``atan``:      ``alpha / (2 (1 + (pi/2 alpha x)^2))``, peak ``alpha/2`` [``ATan``];
- ``rectangle``: ``alpha * 1[|x| < 1/(2 alpha)]`` [``Rect``].
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

from ..registry import Registry

SurrogateFn = Callable[[torch.Tensor, float], torch.Tensor]
#: ``fn(x, alpha)`` overwrites ``x`` with ``sg(x)`` and returns it (callers pass a fresh tensor,
#: such as ``v - threshold``, so no temporary the size of ``x`` is made)
SURROGATES: Registry[SurrogateFn] = Registry("surrogate")


@SURROGATES.register("triangle")
def triangle(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return x.abs_().mul_(-alpha * alpha).add_(alpha).clamp_(min=0.0)


@functools.cache
def _scalar(value: float, dtype: torch.dtype) -> torch.Tensor:
    """``value`` as a 0-dim CPU tensor of ``dtype`` (broadcasts to any shape and device), made
    once (never traced: compiled scans take the other branch of ``sigmoid``)."""
    return torch.tensor(value, dtype=dtype)


@SURROGATES.register("sigmoid")
def sigmoid(x: torch.Tensor, alpha: float) -> torch.Tensor:
    sig = x.mul_(alpha).sigmoid_()
    if torch.compiler.is_compiling():  # fused into one loop anyway
        return sig.addcmul_(sig, sig, value=-1.0).mul_(alpha)
    # alpha sig (1 - sig) in one pass: the gradient of a sigmoid whose output is sig, for an
    # upstream gradient alpha (15 % faster than a multiply-add and a multiply on a CPU)
    scale = _scalar(alpha, sig.dtype)
    return torch.ops.aten.sigmoid_backward.grad_input(scale, sig, grad_input=sig)


@SURROGATES.register("atan")
def atan(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return x.mul_(math.pi / 2 * alpha).square_().add_(1.0).reciprocal_().mul_(alpha / 2)


@SURROGATES.register("rectangle")
def rectangle(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return x.abs_().lt_(0.5 / alpha).mul_(alpha)


def surrogate_in_place(name: str, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """``sg(x)`` of the named surrogate, written over ``x`` (which must be the caller's own)."""
    return SURROGATES.get(name)(x, alpha)


def surrogate_derivative(name: str, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """``sg(x)`` of the named surrogate (a new tensor of ``x``'s shape and dtype)."""
    return surrogate_in_place(name, x.clone(), alpha)
