"""A max-pool over tiling windows that keeps only its argmax for backward.

``nn.MaxPool2d`` saves its input and the argmax indices; its backward reads the input only for
its shape. When the input is a spike map saved as ``bool`` (``saved_spikes``), that backward
first unpacks the whole map to floats. ``TilingMaxPool`` saves the indices alone and scatters
each window's gradient to its argmax, which is the same gradient for windows that tile the
input (kernel = stride, no padding): BPTT runs the max-pools of spikes this way
(``norm_lif.layer_steps``), and so does Rate-BP's rate pass on firing rates.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def is_tiling_max_pool(m: nn.Module) -> bool:
    """A plain 2-d max-pool whose square windows tile the input (kernel = stride, no padding)."""
    if type(m) is not nn.MaxPool2d or m.return_indices or m.ceil_mode:
        return False
    k, s = m.kernel_size, m.stride
    k, s = (k if isinstance(k, tuple) else (k, k)), (s if isinstance(s, tuple) else (s, s))
    d, p = m.dilation, m.padding
    return k[0] == k[1] == s[0] == s[1] and d in (1, (1, 1)) and p in (0, (0, 0))


def pool_size(m: nn.MaxPool2d) -> int:
    """The window side ``k`` of a tiling max-pool."""
    return m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]


class TilingMaxPool(torch.autograd.Function):
    """``(x [N, C, H, W], k) -> max over k x k windows`` that keeps only the argmax indices for
    backward: each window's gradient goes to its argmax (the same first-maximum indices as
    ``nn.MaxPool2d``'s own backward), scattered: the windows tile, so no index repeats and
    the scatter is deterministic (``max_unpool2d`` is flagged as not, on every backward)."""

    @staticmethod
    def forward(ctx, x, k: int):
        out, indices = F.max_pool2d(x, k, return_indices=True)
        ctx.save_for_backward(indices)
        ctx.k, ctx.size = k, x.shape[-2:]
        return out

    @staticmethod
    def backward(ctx, g):
        (indices,) = ctx.saved_tensors
        grad = g.new_zeros(*g.shape[:2], ctx.size[0] * ctx.size[1])
        grad.scatter_(2, indices.flatten(2), g.flatten(2))
        return grad.view(*g.shape[:2], *ctx.size), None
