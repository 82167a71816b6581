"""Compile every Triton kernel of the ``triton`` backend for a GPU, without one, and check that
its code can hold no fused multiply-add.

The spikes must be the reference's bits, so no kernel may contract ``a * b + c`` into one
rounding (``triton_kernels``' docstring; the kernels launch with ``enable_fp_fusion=False``).
Each kernel is compiled as its launcher launches it: the argument types and compile-time flags
are recorded by calling the launchers on CPU tensors with the kernels swapped for recorders,
for neurons that cover every flag (reset, surrogate, detach, input gain; residual and static
drives; running statistics or not). Triton compiles each for ``sm_ARCH`` (PTX, then a cubin
with its own ``ptxas``). In the PTX there must be no ``fma`` and no float ``mul``/``add``/``sub``
without an explicit rounding mode: the PTX ISA lets ``ptxas`` fuse only those into an FMA, never
``mul.rn``/``add.rn``. Exit 1 if a kernel breaks this, or does not compile.

    python scripts/triton_machine_code.py                  # sm_90 (H100, H200)
    python scripts/triton_machine_code.py --arch 80 90 --fusion   # contraction on: it fails
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

# compile for a GPU: real JIT functions, not the interpreter's
os.environ.pop("TRITON_INTERPRET", None)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from spikedistill.spiking import neuron_config
from spikedistill.spiking.kernels import NormDrive
from spikedistill.spiking.kernels import triton_kernels as K
from spikedistill.spiking.kernels import triton_unit_kernels as U

KERNELS = {
    K: ("_forward_scan", "_backward_scan"),
    U: ("_record_scan", "_channel_sums", "_channel_stats"),
}
LAUNCH_OPTIONS = {"enable_fp_fusion", "num_warps", "num_stages"}
POINTER_TYPES = {
    torch.float32: "*fp32", torch.float64: "*fp64", torch.bool: "*i1",
    torch.uint8: "*u8", torch.int16: "*i16", torch.int32: "*i32",
}  # fmt: skip
#: PTX instructions that are, or that ptxas may turn into, a fused multiply-add
FUSIBLE = re.compile(r"^\s*(fma\.\S+|(?:mul|add|sub)\.f(?:32|64))\s", re.M)
NEURONS = [
    neuron_config("tdbn", reset="hard", decay_input=True, surrogate="atan"),
    neuron_config("ratebp", reset="soft", detach_reset=True, surrogate="sigmoid"),
    neuron_config("if", reset="hard", detach_reset=True, surrogate="triangle"),
    neuron_config("tdbn", reset="soft", surrogate="rectangle"),
]


def record_launches() -> list[tuple[triton.JITFunction, dict, dict, dict]]:
    """``(kernel, signature, constexprs, options)`` of every distinct launch the launchers make."""
    launches: dict[tuple, tuple] = {}

    def recorder(fn: triton.JITFunction) -> object:
        class Launch:
            def __getitem__(self, grid) -> Callable[..., None]:
                def launch(*args, **kwargs) -> None:
                    types = [
                        POINTER_TYPES[a.dtype] if isinstance(a, torch.Tensor)
                        else "fp32" if isinstance(a, float) else "i32"
                        for a in args
                    ]  # fmt: skip
                    constexprs = {k: v for k, v in kwargs.items() if k not in LAUNCH_OPTIONS}
                    options = {k: v for k, v in kwargs.items() if k in LAUNCH_OPTIONS}
                    signature = dict(zip(fn.arg_names, types, strict=False))
                    signature.update(dict.fromkeys(constexprs, "constexpr"))
                    key = (fn.__name__, *signature.values(), *sorted(constexprs.items()))
                    launches[key] = (fn, signature, constexprs, options)

                return launch

        return Launch()

    originals = {(m, n): getattr(m, n) for m, names in KERNELS.items() for n in names}
    for (module, name), fn in originals.items():
        setattr(module, name, recorder(fn))
    try:
        run_launchers()
    finally:
        for (module, name), fn in originals.items():
            setattr(module, name, fn)
    return list(launches.values())


def run_launchers() -> None:
    T, B, C, H = 4, 2, 3, 5
    x = torch.randn(T * B, C, H, H)
    scale, shift = torch.ones(C), torch.zeros(C)
    units = [
        NormDrive(x, scale, shift, torch.randn_like(x), T, False),
        NormDrive(torch.randn(B, C, H, H), scale, shift, None, T, True),
    ]
    for cfg in NEURONS:
        for keep in (True, False):
            K.lif_forward(x, cfg, keep)
        K.lif_backward(torch.randn_like(x), x, cfg)
        for unit in units:
            K.norm_forward(unit, cfg)
            K.norm_backward(torch.randn(T * B, C, H, H), unit, cfg)
            U.norm_record(unit, cfg)
    for running in (True, False):
        stats = (torch.zeros(C), torch.ones(C)) if running else (None, None)
        U.batch_stats(x, *stats, 0.1, 1e-5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, nargs="+", default=[90], help="sm_ARCH targets")
    parser.add_argument("--fusion", action="store_true", help="compile with FMA contraction on")
    parser.add_argument("--kernels", nargs="+", help="only these kernels (e.g. _forward_scan)")
    args = parser.parse_args(argv)
    launches = [
        launch
        for launch in record_launches()
        if not args.kernels or launch[0].__name__ in args.kernels
    ]
    bad = 0
    print("| arch | kernel | compile-time flags | fusible instructions |\n|---|---|---|---|")
    for arch in args.arch:
        for fn, signature, constexprs, options in launches:
            options = {**options, "enable_fp_fusion": True} if args.fusion else options
            src = ASTSource(fn, signature, constexprs=constexprs)
            kernel = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
            fusible = FUSIBLE.findall(kernel.asm["ptx"])
            bad += bool(fusible)
            flags = " ".join(f"{k}={v:d}" for k, v in constexprs.items())
            shown = ", ".join(sorted(set(fusible))) or "none"
            print(f"| sm_{arch} | {fn.__name__} | {flags} | {len(fusible)} ({shown}) |")
    total = len(launches) * len(args.arch)
    print(f"{total} kernels compiled (cubin), {bad} with fusible floating-point instructions")
    return int(bad > 0)


if __name__ == "__main__":
    sys.exit(main())
