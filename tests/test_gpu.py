"""The GPU path (``pytest -m gpu``, run by scripts/gpu_check.sh on a CUDA machine; skipped
without one): every backend on CUDA against the reference, the fused unit, Rate-BP, AMP,
``train.compile``, and torchrun on CUDA (nccl DDP where there are two GPUs)."""

import subprocess
import sys

import pytest
import torch

from spikedistill.cli import main
from spikedistill.models import build_model
from spikedistill.spiking import LIF_BACKENDS, lif_multistep, neuron_config, set_backend

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
CUDA = torch.device("cuda")
GPU_BACKENDS = [name for name in LIF_BACKENDS.names() if name not in ("torch", "cpp")]
BASE = """
name: gpu
data: {name: digits, batch_size: 64, eval_batch_size: 500}
model: {name: convnet3, spiking: true, T: 2, options: {width: 8}}
train: {epochs: 1, seed: 0, device: cuda}
"""


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("preset", ["tdbn", "ratebp", "if"])
def test_plain_neuron_on_cuda_matches_the_reference(backend, preset):
    cfg = neuron_config(preset)
    x = torch.randn(8, 16, 32, 9, 9, device=CUDA) * 1.5 + 0.5
    weights = torch.randn_like(x)
    out = {}
    for name in ("torch", backend):
        xi = x.clone().requires_grad_(True)
        spikes = lif_multistep(xi, cfg, backend=name)
        (grad,) = torch.autograd.grad((spikes * weights).sum(), xi)
        out[name] = spikes, grad
    assert torch.equal(out[backend][0], out["torch"][0])
    torch.testing.assert_close(out[backend][1], out["torch"][1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_fused_units_of_a_zoo_model_on_cuda_match_the_reference(backend):
    torch.manual_seed(0)
    model = build_model("resnet19", 10, spiking=True, T=4).to(CUDA)
    x, y = torch.randn(8, 3, 32, 32, device=CUDA), torch.randint(0, 10, (8,), device=CUDA)
    results = {}
    for name in ("torch", backend):
        set_backend(model, name, CUDA)
        model.zero_grad()
        logits = model(x)
        torch.nn.functional.cross_entropy(logits, y).backward()
        results[name] = logits.detach(), model.stem[0].weight.grad.clone()
    torch.testing.assert_close(results[backend][0], results["torch"][0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(results[backend][1], results["torch"][1], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["train.backprop=rate"],
        ["train.amp=bf16"],
        ["train.amp=fp16"],
        ["train.compile=true"],
        ["model.options={width: 8, checkpoint_blocks: true}"],
    ],
    ids=["bptt", "rate", "bf16", "fp16", "compile", "checkpoint-blocks"],
)
def test_a_tiny_run_trains_on_cuda(overrides, tmp_path):
    config = tmp_path / "gpu.yaml"
    config.write_text(BASE)
    assert main(["train", str(config), *overrides, "--out", str(tmp_path / "run")]) == 0


@pytest.mark.parametrize("processes", [1, 2])
def test_torchrun_on_cuda(processes, tmp_path):
    """One process (torchrun's launcher path; WORLD_SIZE=1 runs without a process group), and
    two over nccl with DDP where the machine has two GPUs."""
    if torch.cuda.device_count() < processes:
        pytest.skip(f"needs {processes} GPUs")
    config = tmp_path / "gpu.yaml"
    config.write_text(BASE)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    train = ["-m", "spikedistill.cli", "train", str(config), "--out", str(tmp_path / "ddp")]
    cmd = [*launch, f"--nproc_per_node={processes}", *train]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "done: best top-1" in proc.stdout
