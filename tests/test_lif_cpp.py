"""The C++ kernels (``spiking/kernels/cpp``) on the layouts their loops split: channel blocks
longer than a segment, blocks shorter than a vector, parallel chunks that end inside a block;
and the dtypes they leave to the reference."""

import pytest
import torch

from spikedistill.spiking import choose_backend, neuron_config
from spikedistill.spiking.kernels import LIF_BACKENDS, NormDrive
from spikedistill.spiking.kernels import cpp as lif_cpp
from spikedistill.spiking.surrogate import SURROGATES

CFG = neuron_config("tdbn", reset="soft", decay=0.7)
CPP = LIF_BACKENDS.get("cpp")
SHAPES = {  # (rows, C, H, W): L = H * W neurons per channel block
    "long_blocks": (2, 3, 50, 82),  # L = 4100 > SEGMENT (2048), M > GRAIN: chunks end mid-block
    "short_blocks": (40, 7, 1, 3),  # L = 3
}


@pytest.fixture(scope="module", autouse=True)
def built():
    choose_backend("cpp")  # builds the extension once


def test_every_surrogate_has_a_cpp_twin():
    assert set(lif_cpp.SURROGATE_IDS) == set(SURROGATES.names())


@pytest.mark.parametrize("static", [False, True], ids=["per_step", "static"])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_norm_scans_match_the_reference_on_every_layout(shape, static):
    g = torch.Generator().manual_seed(0)
    T, (rows, C, H, W) = 3, shape
    x = torch.randn(rows if static else T * rows, C, H, W, generator=g, dtype=torch.float64)
    scale = torch.rand(C, generator=g, dtype=torch.float64) + 0.5
    shift = torch.randn(C, generator=g, dtype=torch.float64) + 0.5
    residual = None if static else torch.randn(T * rows, C, H, W, generator=g, dtype=x.dtype)
    grad = torch.randn(T * rows, C, H, W, generator=g, dtype=x.dtype)
    out = {}
    for name in ["torch", "cpp"]:
        backend = LIF_BACKENDS.get(name)
        drive = NormDrive(x, scale, shift, residual, T, static)
        spikes, bits = backend.norm_forward(drive, CFG)
        grad_y = backend.norm_backward(grad, bits.view(torch.uint8), drive, CFG)
        out[name] = spikes, bits, grad_y.reshape(x.shape)
    (ref_spikes, ref_bits, ref_grad), (spikes, bits, grad_y) = out["torch"], out["cpp"]
    assert 0.1 < ref_spikes.mean() < 0.9
    assert spikes.shape == ref_spikes.shape and bits.dtype == torch.bool
    assert torch.equal(spikes, ref_spikes) and torch.equal(bits, ref_bits)
    torch.testing.assert_close(grad_y, ref_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_plain_scans_match_the_reference(shape):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, *shape, generator=g) + 0.6
    grad = torch.randn(4, *shape, generator=g)
    ref_spikes, ref_membrane = LIF_BACKENDS.get("torch").forward(x, CFG, True)
    spikes, membrane = CPP.forward(x, CFG, True)
    assert torch.equal(spikes, ref_spikes)
    torch.testing.assert_close(membrane, ref_membrane, rtol=1e-6, atol=1e-6)
    ref_grad = LIF_BACKENDS.get("torch").backward(grad, ref_membrane, CFG)
    torch.testing.assert_close(CPP.backward(grad, membrane, CFG), ref_grad)
    assert CPP.forward(x, CFG, False)[1] is None


def test_other_dtypes_run_the_reference():
    x = torch.randn(3, 2, 8).bfloat16() + 0.6
    spikes, membrane = CPP.forward(x, CFG, True)
    ref_spikes, ref_membrane = LIF_BACKENDS.get("torch").forward(x, CFG, True)
    assert spikes.dtype == torch.bfloat16
    assert torch.equal(spikes, ref_spikes) and torch.equal(membrane, ref_membrane)


def test_bad_layouts_are_refused_with_a_message():
    x = torch.randn(3, 4, 5)
    with pytest.raises(RuntimeError, match="contiguous CPU tensor"):
        lif_cpp.ops().lif_forward(x.transpose(1, 2), None, None, None, 3, 1, 1, False,
                                  0.5, 1.0, 1.0, True, False)  # fmt: skip
    with pytest.raises(RuntimeError, match="T steps"):
        lif_cpp.ops().lif_forward(x, None, None, None, 7, 1, 1, False, 0.5, 1.0, 1.0, True, False)


def test_per_channel_tensors_of_another_size_are_refused():
    """Running statistics, weight, mean or invstd of another channel count than x's (a
    time-first [T, B, C, ...] input read as [rows, C, L] once wrote past their end)."""
    ops, x, C, L = lif_cpp.ops(), torch.randn(4, 8, 3), 8, 3
    short, right = torch.zeros(2), torch.ones(C)
    for args in [(short, right), (right, short), (right, right.double())]:
        with pytest.raises(RuntimeError, match=r"must be a contiguous CPU tensor of C = 8"):
            ops.batch_stats(x, C, L, *args, 0.1, 1e-5)
    grad, fired = torch.randn(2, 48), torch.zeros(2, 48, dtype=torch.bool)
    args = (grad, fired, x, right, right, None)
    for weight, mean, invstd in [
        (short, right, right),
        (right, short, right),
        (None, right, short),
    ]:
        with pytest.raises(RuntimeError, match=r"tensor of C = 8 values"):
            ops.norm_lif_input_backward(*args, weight, mean, invstd, 2, C, L, False,
                                        0.5, 1.0, 1.0, True, False, 0, 1.0, False)  # fmt: skip


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("track", [True, False])
def test_batchnorm_kernels_match_aten(affine, track):
    """The unit's BatchNorm run by the C++ statistics and backward, against the ``torch``
    backend (ATen's BatchNorm): spikes, gradients and running statistics, with and without
    affine weights and running statistics."""
    from torch import nn

    from spikedistill.spiking import LIF, FoldedNeuron
    from spikedistill.spiking.norm_lif import norm_act

    out = {}
    for name in ["torch", "cpp"]:
        torch.manual_seed(0)
        bn = nn.BatchNorm2d(6, affine=affine, track_running_stats=track).double()
        act = FoldedNeuron(LIF(CFG, backend=name), 2)
        x = (torch.randn(8, 6, 5, 5, dtype=torch.float64) + 0.4).requires_grad_(True)
        spikes = norm_act(bn, act, x)
        assert type(spikes.grad_fn).__name__ == "BatchNormLIFBackward"
        (spikes * torch.linspace(-1, 1, spikes.numel()).view_as(spikes)).sum().backward()
        params = [p.grad for p in bn.parameters()]
        out[name] = [spikes, x.grad, *params, *[b.clone() for b in bn.buffers()]]
    for ours, theirs in zip(out["cpp"], out["torch"], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_batch_statistics_survive_a_large_mean():
    """float32 with a mean 1000 standard deviations away: the shifted sums keep the variance."""
    x = torch.randn(64, 3, 10, 10, generator=torch.Generator().manual_seed(0)) + 1000.0
    mean, invstd = CPP.batch_stats(x, None, None, 0.0, 1e-5)
    var, ref_mean = torch.var_mean(x.double(), [0, 2, 3], correction=0)
    torch.testing.assert_close(mean.double(), ref_mean, rtol=1e-7, atol=0)
    torch.testing.assert_close(invstd.double(), (var + 1e-5).rsqrt(), rtol=1e-4, atol=0)
