"""The ``triton`` backend's kernels compiled for a GPU without one
(``scripts/triton_machine_code.py``): every launch the launchers make compiles for sm_90, and
its PTX holds nothing that ptxas could fuse into a multiply-add (which would round once and
flip spikes at the threshold); with contraction allowed, the same check fails."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

triton = pytest.importorskip("triton")
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "triton_machine_code.py"
PTXAS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
pytestmark = pytest.mark.skipif(not PTXAS.exists(), reason="this triton has no CUDA ptxas")
SUMMARY = re.compile(r"(\d+) kernels compiled \(cubin\), (\d+) with fusible")


def check(*args: str) -> tuple[int, int, int]:
    """``(exit status, kernels compiled, kernels with fusible instructions)``."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    cmd = [sys.executable, str(SCRIPT), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    summary = SUMMARY.search(proc.stdout)
    assert summary, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.returncode, int(summary[1]), int(summary[2])


def test_every_kernel_compiles_for_sm90_with_nothing_to_fuse():
    status, compiled, fusible = check()
    assert (status, fusible) == (0, 0) and compiled >= 30  # every flag combination launched


def test_the_check_sees_contraction_where_it_is_allowed():
    status, compiled, fusible = check("--fusion", "--kernels", "_forward_scan")
    assert status == 1 and fusible == compiled > 0
