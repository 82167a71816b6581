"""The ``triton`` backend's kernels against the reference scans, for every neuron preset and
reset/surrogate variant: identical spikes, membranes and gradients within float rounding. On a
CPU they run in Triton's interpreter (``TRITON_INTERPRET=1``, set in conftest.py)."""

import itertools

import pytest
import torch

from spikedistill.spiking import lif_multistep, neuron_config
from spikedistill.spiking.kernels import LIF_BACKENDS, choose_backend
from spikedistill.spiking.kernels.reference import lif_backward, lif_forward
from spikedistill.spiking.surrogate import SURROGATES

pytest.importorskip("triton")
BACKEND = LIF_BACKENDS.get("triton")
VARIANTS = [
    neuron_config(preset, reset=reset, detach_reset=detach, decay_input=decay_input,
                  surrogate=surrogate)
    for preset, reset, detach, decay_input, surrogate in itertools.product(
        ("tdbn", "ratebp", "if"), ("hard", "soft"), (False, True), (False, True), SURROGATES
    )
    if not (preset == "if" and decay_input)  # an IF neuron (decay 1) would scale inputs by 0
]  # fmt: skip


@pytest.mark.parametrize("cfg", VARIANTS, ids=lambda c: f"{c.decay}-{c.reset}-"
                         f"{'detach' if c.detach_reset else 'attach'}-"
                         f"{'din' if c.decay_input else 'x'}-{c.surrogate}")  # fmt: skip
def test_kernels_equal_the_reference_scans(cfg):
    generator = torch.Generator().manual_seed(len(str(cfg)))
    x = torch.randn(6, 3, 5, 7, generator=generator) * 1.5 + 0.6
    grad_spikes = torch.randn(x.shape, generator=generator)
    spikes, membrane = BACKEND.forward(x, cfg, keep_membrane=True)
    ref_spikes, ref_membrane = lif_forward(x, cfg, keep_membrane=True)
    assert torch.equal(spikes, ref_spikes) and 0 < spikes.mean() < 1
    torch.testing.assert_close(membrane, ref_membrane, rtol=1e-6, atol=1e-6)
    grad = BACKEND.backward(grad_spikes, membrane, cfg)
    torch.testing.assert_close(grad, lif_backward(grad_spikes, ref_membrane.clone(), cfg),
                               rtol=1e-5, atol=1e-6)  # fmt: skip


def test_the_backend_runs_a_neuron_end_to_end_and_falls_back_for_other_dtypes():
    cfg = neuron_config("tdbn")
    x = (torch.randn(4, 2, 9) + 0.5).requires_grad_(True)
    spikes = lif_multistep(x, cfg, backend=choose_backend("triton", "cpu"))
    (grad,) = torch.autograd.grad(spikes.sum(), x)
    x_ref = x.detach().clone().requires_grad_(True)
    ref = lif_multistep(x_ref, cfg, backend="torch")
    (ref_grad,) = torch.autograd.grad(ref.sum(), x_ref)
    assert torch.equal(spikes, ref)
    torch.testing.assert_close(grad, ref_grad)
    half = x.detach().to(torch.bfloat16)
    assert torch.equal(BACKEND.forward(half, cfg, False)[0], lif_forward(half, cfg, False)[0])


def test_auto_prefers_triton_on_cuda_then_compile(monkeypatch):
    from spikedistill.spiking import kernels

    assert kernels.AUTO["cuda"] == ("triton", "compile")
    monkeypatch.delenv("TRITON_INTERPRET")
    assert "TRITON_INTERPRET=1" in BACKEND.unavailable(torch.device("cpu"))
    assert BACKEND.unavailable(torch.device("cuda")) is None  # triton imports here
