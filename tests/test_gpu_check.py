"""``scripts/gpu_check.sh`` off a GPU: without CUDA it checks its own set-up and skips the GPU
parts (exit 0); ``--rehearse`` (slow: ``pytest -m slow``) runs every step on the CPU at toy
sizes, as it would run them on the device, and packs the outputs into one bundle."""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from conftest import write_mnist

ROOT = Path(__file__).resolve().parents[1]
needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here")


def run_script(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out"), **env}
    cmd = ["bash", str(ROOT / "scripts" / "gpu_check.sh"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@needs_no_cuda
def test_without_cuda_the_check_skips_the_gpu_parts(tmp_path):
    proc = run_script(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no CUDA device" in proc.stdout
    assert "] GPU tests" not in proc.stdout  # the step never started
    assert "SKIPPED" in proc.stdout  # test_gpu.py was collected: its imports work
    assert f"torch {torch.__version__}" in (tmp_path / "out" / "env.txt").read_text()


@needs_no_cuda
def test_a_gpu_that_torch_cannot_use_is_an_error(tmp_path):
    """``nvidia-smi`` sees a GPU but torch has no CUDA (a CPU build): exit 1, not a skip."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'\n")
    fake.chmod(0o755)
    proc = run_script(tmp_path, PATH=f"{bin_dir}:{os.environ['PATH']}")
    assert proc.returncode == 1
    assert "a GPU is here but" in proc.stdout and "no CUDA device" not in proc.stdout


@pytest.mark.slow
@needs_no_cuda
def test_a_rehearsal_runs_every_step_and_bundles_the_outputs(tmp_path):
    write_mnist(tmp_path / "mnist", n_train=300, n_test=50)
    bundle = tmp_path / "gpu.tgz"
    proc = run_script(tmp_path, "--rehearse", MNIST_DIR=str(tmp_path / "mnist"), BUNDLE=str(bundle))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with tarfile.open(bundle) as tar:
        names = {Path(n).name for n in tar.getnames()}
    for backend in ("torch", "compile"):
        assert {f"bench_convnet3_cpu_{backend}.{ext}" for ext in ("md", "csv", "png")} <= names
    assert {"env.txt", "tests.txt", "mnist.txt", "metrics.json"} <= names
    assert not any(name.endswith(".pt") for name in names)  # no checkpoints in the bundle
    assert "after 1 epochs" in (tmp_path / "out" / "mnist.txt").read_text()
