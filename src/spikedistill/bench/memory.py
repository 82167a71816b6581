"""Peak memory of a training step above the process's baseline.

On CPU: one fresh process per point (``python -m spikedistill.bench.memory SPEC_JSON VARIANT``),
peak RSS (``VmHWM``) during two steps minus the RSS just before the first. ``VmHWM`` starts
afresh at ``exec``, unlike ``getrusage``'s ``ru_maxrss``, which a child inherits from its
parent. On CUDA: the peak allocation above the allocation before the first step.

The fresh process runs glibc's allocator with a fixed mmap threshold (``MALLOC_MMAP_THRESHOLD_``
at 128 KiB, its default starting value): every tensor above it gets its own mapping, returned to
the OS when freed, so the RSS peak is the peak of live tensors, as ``max_memory_allocated`` is on
CUDA. With glibc's dynamic threshold (the default) freed tensors stay in the heap and the peak
depends on fragmentation: the same point measured 114-128 MB there and 57 MB pinned, every time.

With ``warmup`` steps (the ``compile`` and ``cpp`` backends need one: compiling or loading the
kernels is not step memory) the warm-up runs first, freed memory goes back to the OS
(``malloc_trim``), ``VmHWM`` is reset (``/proc/self/clear_refs``) and the baseline is taken
after that.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys

import torch

from .variants import VARIANTS, BenchSpec, Step


def status_bytes(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, from ``/proc/self/status``."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status (peak memory needs Linux)")


def _forget_peak() -> None:
    """Return freed heap memory to the OS and restart ``VmHWM`` at the current RSS."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def peak_step_bytes(step: Step, device: str, steps: int = 2, warmup: int = 0) -> int:
    """Peak memory of ``steps`` calls of ``step`` above the memory held before them, after
    ``warmup`` calls whose own peak is forgotten."""
    for _ in range(warmup):
        step()
    if warmup and device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    elif warmup:
        _forget_peak()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - baseline
    baseline = status_bytes("VmRSS")
    for _ in range(steps):
        step()
    return status_bytes("VmHWM") - baseline


#: the allocator settings of a fresh-process memory point (see the module docstring)
PINNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def spec_to_json(spec: BenchSpec) -> str:
    return json.dumps(spec.__dict__)


def fresh_process_peak(spec: BenchSpec, variant: str, repeats: int = 1, warmup: int = 0) -> int:
    """``peak_step_bytes`` of the variant's training step, each measured in a new process;
    the median of ``repeats`` processes (RSS peaks of small nets vary with the allocator)."""
    peaks = []
    for _ in range(repeats):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "spikedistill.bench.memory",
                spec_to_json(spec),
                variant,
                str(warmup),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, **PINNED_MALLOC},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"memory point {variant} failed: {proc.stderr.strip()[-500:]}")
        peaks.append(int(json.loads(proc.stdout.strip().splitlines()[-1])["peak_bytes"]))
    return int(statistics.median(peaks))


def main(argv: list[str]) -> None:
    spec = BenchSpec(**json.loads(argv[0]))
    step = VARIANTS.get(argv[1])(spec).train
    warmup = int(argv[2]) if len(argv) > 2 else 0
    print(json.dumps({"peak_bytes": peak_step_bytes(step, spec.device, warmup=warmup)}))


if __name__ == "__main__":
    main(sys.argv[1:])
