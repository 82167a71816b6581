"""Independent reference implementations used by the tests (plain autograd, no custom kernels)."""

from __future__ import annotations

import math

import torch

# Closed-form primitives g(x) whose derivative is each surrogate (SpikingJelly's definitions).
PRIMITIVES = {
    "sigmoid": lambda x, a: torch.sigmoid(a * x),
    "atan": lambda x, a: torch.atan(math.pi / 2 * a * x) / math.pi + 0.5,
    "triangle": lambda x, a: torch.where(
        x < -1 / a,
        torch.zeros_like(x),
        torch.where(x > 1 / a, torch.ones_like(x), -0.5 * a * a * x.abs() * x + a * x + 0.5),
    ),
    "rectangle": lambda x, a: torch.clamp(a * x + 0.5, 0.0, 1.0),
}


def primitive_derivative(name: str, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """d g / d x by autograd through the primitive (independent of spikedistill's formulas)."""
    with torch.enable_grad():  # also when called from inside a backward pass
        x = x.detach().double().requires_grad_(True)
        (grad,) = torch.autograd.grad(PRIMITIVES[name](x, alpha).sum(), x)
    return grad


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, name, alpha):
        ctx.save_for_backward(x)
        ctx.name, ctx.alpha = name, alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * primitive_derivative(ctx.name, x, ctx.alpha).to(grad.dtype), None, None


def reference_lif(x: torch.Tensor, cfg) -> torch.Tensor:
    """Step-by-step LIF written with elementary autograd ops, ``[T, ...] -> spikes``."""
    u = torch.zeros_like(x[0])
    scale = 1 - cfg.decay if cfg.decay_input else 1.0
    out = []
    for t in range(x.shape[0]):
        v = cfg.decay * u + scale * x[t]
        s = _Spike.apply(v - cfg.threshold, cfg.surrogate, cfg.alpha)
        r = s.detach() if cfg.detach_reset else s
        u = v * (1 - r) if cfg.reset == "hard" else v - cfg.threshold * r
        out.append(s)
    return torch.stack(out)


def grad_fn_names(t: torch.Tensor) -> list[str]:
    """The class names of every node of ``t``'s autograd graph (which ops backward will run)."""
    seen, stack, names = set(), [t.grad_fn], []
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.append(type(node).__name__)
        stack += [n for n, _ in node.next_functions]
    return names
