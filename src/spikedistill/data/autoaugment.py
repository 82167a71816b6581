"""The CIFAR-10 AutoAugment policy (Cubuk et al., 2019) on batched tensors, without torchvision.

Each sample draws one of the 25 sub-policies; each of its two operations is applied with its
probability, at its magnitude (a bin of 10 levels), with a random sign for the signed ones.
Operations work on 8-bit levels like the PIL original: every step rounds to integers in
[0, 255]; geometric operations use nearest-neighbour sampling and fill with 0 (black).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

# (operation, probability, magnitude bin or None) pairs, in the published order
CIFAR10_POLICY: tuple[tuple[tuple[str, float, int | None], ...], ...] = (
    (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
    (("Color", 0.9, 9), ("Equalize", 0.6, None)),
    (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, None), ("Invert", 0.1, None)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
)

# operation -> (value at the top bin 9, signed); bins are linspace(0, top, 10)
_RANGES: dict[str, tuple[float, bool]] = {
    "ShearX": (0.3, True),
    "ShearY": (0.3, True),
    "TranslateX": (150.0 / 331.0, True),  # fraction of the image width
    "TranslateY": (150.0 / 331.0, True),  # fraction of the image height
    "Rotate": (30.0, True),  # degrees
    "Brightness": (0.9, True),  # enhancement factor is 1 + value
    "Color": (0.9, True),
    "Contrast": (0.9, True),
    "Sharpness": (0.9, True),
}
_POSTERIZE_BITS = (8, 8, 7, 7, 6, 6, 5, 5, 4, 4)


def magnitude(op: str, level: int | None) -> float:
    """Unsigned magnitude of ``op`` at bin ``level`` (0..9); 0.0 for parameterless ops."""
    if level is None:
        return 0.0
    if op == "Posterize":
        return float(_POSTERIZE_BITS[level])
    if op == "Solarize":
        return 256.0 * (1.0 - level / 9.0)  # threshold, linspace(256, 0, 10)
    top, _ = _RANGES[op]
    return top * level / 9.0


def _finish(v: Tensor) -> Tensor:
    return v.round_().clamp_(0.0, 255.0)


def _gray(v: Tensor) -> Tensor:
    """ITU-R 601 luma ``[n, 1, H, W]`` (rounded like PIL's "L" mode); ``v`` itself if 1 channel."""
    if v.shape[1] == 1:
        return v
    r, g, b = v[:, 0:1], v[:, 1:2], v[:, 2:3]
    return (0.299 * r + 0.587 * g + 0.114 * b).round()


def _blend(degenerate: Tensor, v: Tensor, factor: Tensor) -> Tensor:
    """PIL ``ImageEnhance``: ``degenerate + factor * (v - degenerate)``."""
    f = factor.to(v.dtype).reshape(-1, 1, 1, 1)
    return _finish(degenerate + f * (v - degenerate))


def _affine(v: Tensor, coeffs: Tensor) -> Tensor:
    """Nearest-neighbour resampling: output pixel centre ``(x, y)`` reads input point
    ``(a x + b y + c, d x + e y + f)`` for per-sample ``coeffs [n, 6]``; outside is 0."""
    n, c, h, w = v.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64) + 0.5,
        torch.arange(w, dtype=torch.float64) + 0.5,
        indexing="ij",
    )
    k = coeffs.to(torch.float64)[:, :, None, None]
    xi = torch.floor(k[:, 0] * xs + k[:, 1] * ys + k[:, 2]).long()  # [n, H, W]
    yi = torch.floor(k[:, 3] * xs + k[:, 4] * ys + k[:, 5]).long()
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    flat = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).reshape(n, 1, h * w).expand(n, c, h * w)
    out = v.reshape(n, c, h * w).gather(2, flat).reshape(n, c, h, w)
    return out * inside[:, None]


def _coeffs(*columns: Tensor | float, n: int) -> Tensor:
    return torch.stack([torch.as_tensor(col, dtype=torch.float64).expand(n) for col in columns], 1)


def shear_x(v: Tensor, m: Tensor) -> Tensor:
    """Input ``x + m * y`` (shear about the top-left corner, as in PIL's original policy)."""
    return _affine(v, _coeffs(1.0, m, 0.0, 0.0, 1.0, 0.0, n=len(v)))


def shear_y(v: Tensor, m: Tensor) -> Tensor:
    return _affine(v, _coeffs(1.0, 0.0, 0.0, m, 1.0, 0.0, n=len(v)))


def translate_x(v: Tensor, m: Tensor) -> Tensor:
    """Shift by ``int(m * width)`` pixels (``m`` is a signed fraction of the width)."""
    shift = torch.trunc(m.double() * v.shape[3])
    return _affine(v, _coeffs(1.0, 0.0, shift, 0.0, 1.0, 0.0, n=len(v)))


def translate_y(v: Tensor, m: Tensor) -> Tensor:
    shift = torch.trunc(m.double() * v.shape[2])
    return _affine(v, _coeffs(1.0, 0.0, 0.0, 0.0, 1.0, shift, n=len(v)))


def rotate(v: Tensor, m: Tensor) -> Tensor:
    """Rotate by ``m`` degrees (counter-clockwise) about the image centre."""
    h, w = v.shape[2:]
    cx, cy = w / 2.0, h / 2.0
    t = torch.deg2rad(m.double())
    cos, sin = torch.cos(t), torch.sin(t)
    # input = R(-angle in image coordinates, y down) @ (out - centre) + centre
    return _affine(
        v,
        _coeffs(cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, n=len(v)),
    )


def brightness(v: Tensor, m: Tensor) -> Tensor:
    return _blend(torch.zeros_like(v), v, 1.0 + m)


def color(v: Tensor, m: Tensor) -> Tensor:
    return _blend(_gray(v).expand_as(v), v, 1.0 + m)


def contrast(v: Tensor, m: Tensor) -> Tensor:
    mean = _gray(v).mean(dim=(1, 2, 3), keepdim=True).round()
    return _blend(mean.expand_as(v), v, 1.0 + m)


def sharpness(v: Tensor, m: Tensor) -> Tensor:
    """Blend with PIL's SMOOTH filter (3x3, centre weight 5, sum 13; border pixels kept)."""
    n, c, h, w = v.shape
    if h < 3 or w < 3:
        return v.clone()
    kernel = torch.ones(1, 1, 3, 3, dtype=v.dtype)
    kernel[0, 0, 1, 1] = 5.0
    smooth = torch.nn.functional.conv2d(v.reshape(n * c, 1, h, w), kernel / 13.0)
    degenerate = v.clone()
    degenerate[:, :, 1:-1, 1:-1] = smooth.reshape(n, c, h - 2, w - 2).round()
    return _blend(degenerate, v, 1.0 + m)


def posterize(v: Tensor, m: Tensor) -> Tensor:
    """Keep the top ``m`` bits of every 8-bit value."""
    step = torch.pow(2.0, 8.0 - m.to(v.dtype)).reshape(-1, 1, 1, 1)
    return torch.floor(v / step) * step


def solarize(v: Tensor, m: Tensor) -> Tensor:
    """Invert values at or above the threshold ``m``."""
    return torch.where(v >= m.to(v.dtype).reshape(-1, 1, 1, 1), 255.0 - v, v)


def autocontrast(v: Tensor, m: Tensor) -> Tensor:
    """Stretch every channel linearly so that its min -> 0 and max -> 255 (flat ones kept)."""
    lo = v.amin(dim=(2, 3), keepdim=True)
    hi = v.amax(dim=(2, 3), keepdim=True)
    scale = 255.0 / (hi - lo).clamp(min=1.0)
    return torch.where(hi > lo, _finish((v - lo) * scale), v)


def equalize(v: Tensor, m: Tensor) -> Tensor:
    """Histogram equalisation per channel, with PIL's ``ImageOps.equalize`` look-up table."""
    n, c, h, w = v.shape
    q = v.reshape(n * c, h * w).long()
    hist = torch.zeros(n * c, 256, dtype=torch.long).scatter_add_(1, q, torch.ones_like(q))
    last = hist.gather(1, q.amax(1, keepdim=True))  # count of the highest value present
    step = (h * w - last) // 255
    before = torch.cumsum(hist, 1) - hist
    lut = ((before + step // 2) // step.clamp(min=1)).clamp(max=255)
    out = torch.where(step > 0, lut.gather(1, q), q)
    return out.reshape(n, c, h, w).to(v.dtype)


def invert(v: Tensor, m: Tensor) -> Tensor:
    return 255.0 - v


OPS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "ShearX": shear_x,
    "ShearY": shear_y,
    "TranslateX": translate_x,
    "TranslateY": translate_y,
    "Rotate": rotate,
    "Brightness": brightness,
    "Color": color,
    "Contrast": contrast,
    "Sharpness": sharpness,
    "Posterize": posterize,
    "Solarize": solarize,
    "AutoContrast": autocontrast,
    "Equalize": equalize,
    "Invert": invert,
}


def autoaugment_cifar10(x: Tensor, generator: torch.Generator) -> Tensor:
    """Apply the CIFAR-10 AutoAugment policy to ``x [B, C, H, W]`` (C = 1 or 3).

    ``x`` is uint8 in [0, 255] or float in [0, 1]; the result has the same dtype (floats come
    back on the 1/255 grid). All randomness is drawn from ``generator``.
    """
    is_uint8 = x.dtype == torch.uint8
    v = x.to(torch.float32) if is_uint8 else _finish(x.to(torch.float32) * 255.0)
    b = v.shape[0]
    choice = torch.randint(len(CIFAR10_POLICY), (b,), generator=generator).tolist()
    probs = torch.rand(b, 2, generator=generator)
    negative = torch.rand(b, 2, generator=generator) < 0.5
    for stage in range(2):
        groups: dict[str, tuple[list[int], list[float]]] = {}
        for i, k in enumerate(choice):
            op, p, level = CIFAR10_POLICY[k][stage]
            if probs[i, stage] > p:
                continue
            mag = magnitude(op, level)
            if op in _RANGES and _RANGES[op][1] and negative[i, stage]:
                mag = -mag
            idx, mags = groups.setdefault(op, ([], []))
            idx.append(i)
            mags.append(mag)
        for op, (idx, mags) in groups.items():
            rows = torch.tensor(idx)
            v[rows] = OPS[op](v[rows], torch.tensor(mags, dtype=torch.float64))
    if is_uint8:
        return v.to(torch.uint8)
    return (v / 255.0).to(x.dtype)
