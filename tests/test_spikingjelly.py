"""Equivalence with SpikingJelly's LIFNode (same dynamics, same surrogate)."""

import pytest
import torch

sj = pytest.importorskip("spikingjelly.activation_based", reason="spikingjelly not installed")
from spikingjelly.activation_based import functional, neuron, surrogate  # noqa: E402

from spikedistill.spiking import LIF  # noqa: E402

CASES = {
    # name: (our LIF, the SpikingJelly LIFNode with the same dynamics)
    "tdbn": (
        lambda: LIF("tdbn"),
        lambda: neuron.LIFNode(
            tau=2.0,
            decay_input=False,
            v_reset=0.0,
            surrogate_function=surrogate.PiecewiseQuadratic(alpha=1.0),
            detach_reset=False,
            step_mode="m",
        ),
    ),
    "ratebp": (
        lambda: LIF("ratebp"),
        lambda: neuron.LIFNode(
            tau=1.25,
            decay_input=False,
            v_reset=None,
            surrogate_function=surrogate.Sigmoid(alpha=4.0),
            detach_reset=True,
            step_mode="m",
        ),
    ),
    "spikingjelly_default": (  # tau 2, decay_input, hard reset, sigmoid 4
        lambda: LIF("tdbn", decay_input=True, surrogate="sigmoid", alpha=4.0),
        lambda: neuron.LIFNode(step_mode="m"),
    ),
    "atan_soft_attached": (
        lambda: LIF("tdbn", reset="soft", surrogate="atan", alpha=2.0),
        lambda: neuron.LIFNode(
            tau=2.0,
            decay_input=False,
            v_reset=None,
            surrogate_function=surrogate.ATan(alpha=2.0),
            step_mode="m",
        ),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_same_spikes_and_input_gradients_as_spikingjelly_lifnode(case):
    ours_factory, theirs_factory = CASES[case]
    torch.manual_seed(1)
    x = torch.randn(8, 4, 3, 5, 5) * 1.5 + 0.6
    weights = torch.randn_like(x)
    results = []
    for module in (ours_factory(), theirs_factory()):
        xi = x.clone().requires_grad_(True)
        spikes = module(xi)
        (spikes * weights).sum().backward()
        results.append((spikes.detach(), xi.grad))
        functional.reset_net(module) if hasattr(module, "reset") else None
    (s_ours, g_ours), (s_theirs, g_theirs) = results
    assert s_ours.sum() > 0
    assert torch.equal(s_ours, s_theirs)
    torch.testing.assert_close(g_ours, g_theirs, rtol=0, atol=1e-6)


def test_zoo_model_with_spikingjelly_neurons_matches_ours():
    from spikedistill.interop.spikingjelly import reset, use_spikingjelly_neurons
    from spikedistill.models import build_model

    torch.manual_seed(0)
    ours = build_model("resnet8", 10, spiking=True, T=3, neuron="ratebp")
    theirs = build_model("resnet8", 10, spiking=True, T=3, neuron="ratebp")
    theirs.load_state_dict(ours.state_dict())
    use_spikingjelly_neurons(theirs)
    x = torch.randn(4, 3, 32, 32)
    out_ours, out_theirs = ours(x), theirs(x)
    out_ours.sum().backward()
    out_theirs.sum().backward()
    reset(theirs)
    torch.testing.assert_close(out_ours, out_theirs, rtol=0, atol=1e-5)
    torch.testing.assert_close(
        ours.stem[0].weight.grad, theirs.stem[0].weight.grad, rtol=1e-4, atol=1e-5
    )
