"""The GPU path (``pytest -m gpu``, run by scripts/gpu_check.sh on a CUDA machine; skipped
without one): every backend on CUDA against the reference, the fused unit, Rate-BP, AMP,
``train.compile``, DDP over nccl (with SyncBatchNorm too) and torchrun on CUDA."""

import copy
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from torch import nn

from spikedistill.cli import main
from spikedistill.models import build_model
from spikedistill.spiking import LIF, LIF_BACKENDS, lif_multistep, neuron_config, set_backend
from test_backends import charge_on_the_threshold

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


def _near_threshold(case: str, cfg) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """``(x, scale, shift, T)`` on CUDA: a drive ``x scale + shift`` within rounding of the
    threshold (``drive``: one step), or an exact drive (scale 1, shift 0) whose step-1 charge
    ``y_1 + decay y_0`` is (``charge``)."""
    g = torch.Generator().manual_seed(0)
    C = 8
    if case == "charge":
        y0 = torch.rand(256, C, 64, generator=g) * 0.6 + 0.3
        ulps = torch.randint(-3, 4, y0.shape, generator=g).float()
        y1 = (cfg.threshold - cfg.decay * y0.double()).float()
        x = torch.cat([y0, y1 + ulps * torch.finfo(torch.float32).eps * y1])
        scale, shift, T = torch.ones(C), torch.zeros(C), 2
    else:
        scale, shift, T = torch.rand(C, generator=g) * 3 + 0.1, torch.randn(C, generator=g), 1
        at_threshold = ((cfg.threshold - shift) / scale).view(1, -1, 1)
        x = at_threshold * (1 + torch.randn(256, C, 64, generator=g) * 1e-6)
    return x.to(CUDA), scale.to(CUDA), shift.to(CUDA), T


@pytest.mark.parametrize("backend", ["torch", *GPU_BACKENDS])
def test_charges_on_the_threshold_fire_the_cpu_bits_on_cuda(backend):
    """Charges within rounding of the threshold (test_backends checks the CPU's bits against
    numpy): a backend that contracts ``k x + decay u`` into one FMA on the GPU fires others."""
    if backend == "triton":
        pytest.importorskip("triton")
    cfg = neuron_config("tdbn", decay=0.8)
    x = charge_on_the_threshold(cfg)
    expected = lif_multistep(x, cfg, backend="torch")
    assert torch.equal(lif_multistep(x.to(CUDA), cfg, backend=backend).cpu(), expected)


@pytest.mark.parametrize("backend", ["torch", *GPU_BACKENDS])
def test_a_compiled_neuron_fires_the_cpu_bits_on_cuda(backend):
    """``train.compile``: Inductor takes the neuron into the model's graph (the Triton kernels
    as user-defined kernels, the torch and compile scans fused with the rest) and launches it
    with its own options, which may contract ``k x + decay u``."""
    if backend == "triton":
        pytest.importorskip("triton")
    cfg = neuron_config("tdbn", decay=0.8)
    x = charge_on_the_threshold(cfg)
    expected = lif_multistep(x, cfg, backend="torch")
    x_cuda = x.to(CUDA).requires_grad_(True)
    spikes = torch.compile(LIF(cfg, backend=backend))(x_cuda)
    spikes.sum().backward()  # the training graph: forward and backward
    assert torch.equal(spikes.detach().cpu(), expected) and x_cuda.grad is not None


@pytest.mark.parametrize("case", ["drive", "charge"])
def test_triton_unit_kernels_on_cuda_fire_the_reference_bits(case):
    """The Triton unit kernels where the GPU could round differently (a contracted
    multiply-add): drives or charges within rounding of the threshold fire the reference's bits
    in the forward and the record scan; ``dL/dy`` and the batch statistics within rounding."""
    pytest.importorskip("triton")
    from spikedistill.spiking.kernels import NormDrive

    cfg = neuron_config("tdbn", decay=0.8)
    x, scale, shift, T = _near_threshold(case, cfg)
    ours, ref = LIF_BACKENDS.get("triton"), LIF_BACKENDS.get("torch")
    unit = NormDrive(x, scale, shift, None, T, False)
    spikes, bits = ours.norm_forward(unit, cfg)
    ref_spikes, ref_bits = ref.norm_forward(unit, cfg)
    assert 0.2 < ref_spikes.view(T, -1)[-1].mean() < 0.8  # the last step straddles
    assert torch.equal(bits, ref_bits) and torch.equal(spikes, ref_spikes)
    record = ours.norm_record(unit, cfg)
    ref_record = ref.norm_record(NormDrive(x.clone(), scale, shift, None, T, False), cfg)
    assert torch.equal(record[0], ref_record[0]) and torch.equal(record[1], ref_record[1])
    torch.testing.assert_close(record[2], ref_record[2], rtol=1e-5, atol=1e-6)
    grad_spikes = torch.randn_like(spikes)
    grad = ours.norm_backward(grad_spikes, bits.view(torch.uint8), unit, cfg)
    ref_grad = ref.norm_backward(grad_spikes, ref_bits.view(torch.uint8), unit, cfg)
    torch.testing.assert_close(grad, ref_grad.reshape(grad.shape), rtol=1e-5, atol=1e-6)
    running = [torch.zeros(x.shape[1], device=CUDA), torch.ones(x.shape[1], device=CUDA)]
    ref_running = [b.clone() for b in running]
    for a, b in zip(ours.batch_stats(x, *running, 0.1, 1e-5),
                    ref.batch_stats(x, *ref_running, 0.1, 1e-5), strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(running, ref_running, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


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


def ddp_gradients(sync_bn: bool, store: str, group: str = "nccl", device=CUDA) -> None:
    """A zoo SNN on its ``auto`` backend, and its copy under DDP (``SyncBatchNorm`` too with
    ``sync_bn``) in a process group of one over ``group``: one step each, equal gradients."""
    dist.init_process_group(group, init_method=f"file://{store}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = build_model("resnet19", 10, spiking=True, T=2).to(device)
        twin = copy.deepcopy(model)
        twin = nn.SyncBatchNorm.convert_sync_batchnorm(twin) if sync_bn else twin
        ids = [device.index or 0] if device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel(twin, device_ids=ids)
        set_backend(model, "auto", device)
        set_backend(ddp.module, "auto", device)
        x, y = torch.randn(8, 3, 32, 32, device=device), torch.randint(0, 10, (8,), device=device)
        for net in (model, ddp):
            nn.functional.cross_entropy(net(x), y).backward()
        for (name, a), b in zip(model.named_parameters(), ddp.module.parameters(), strict=True):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=name)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("sync_bn", [False, True], ids=["ddp", "ddp-syncbn"])
def test_ddp_over_nccl_on_one_gpu_gives_the_plain_gradients(sync_bn, tmp_path):
    """nccl and DDP on one GPU: torchrun with one process trains without a process group
    (below), so this joins a group of one itself; DDP still all-reduces every gradient."""
    ddp_gradients(sync_bn, str(tmp_path / "store"))


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
