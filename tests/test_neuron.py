import itertools
import math

import pytest
import torch

from reference import primitive_derivative, reference_lif
from spikedistill.errors import ConfigError, UnknownNameError
from spikedistill.spiking import (
    IF,
    LIF,
    SURROGATES,
    lif_multistep,
    neuron_config,
    surrogate_derivative,
)


def seq(*values):
    return torch.tensor(values, dtype=torch.float64).view(-1, 1)


def test_tdbn_preset_hand_computed_sequence():
    # decay 0.5, threshold 1, hard reset to 0:
    # v = 0.6 -> 0.3+0.6 = 0.9 -> 0.45+1.5 = 1.95 (fire, u = 0) -> 0.2 -> 0.1+0.9 = 1.0 (fire)
    spikes, v = lif_multistep(seq(0.6, 0.6, 1.5, 0.2, 0.9), neuron_config("tdbn"), True)
    assert spikes.flatten().tolist() == [0, 0, 1, 0, 1]
    assert torch.allclose(v.flatten(), seq(0.6, 0.9, 1.95, 0.2, 1.0).flatten())


def test_ratebp_preset_hand_computed_sequence():
    # decay 0.2, soft reset: v = 0.9 -> 0.18+0.9 = 1.08 (fire, u = 0.08) -> 0.016+2.5 = 2.516
    # (fire, u = 1.516) -> 0.3032+0 = 0.3032
    spikes, v = lif_multistep(seq(0.9, 0.9, 2.5, 0.0), neuron_config("ratebp"), True)
    assert spikes.flatten().tolist() == [0, 1, 1, 0]
    assert torch.allclose(v.flatten(), seq(0.9, 1.08, 2.516, 0.3032).flatten())


def test_if_integrates_without_leak_and_soft_resets():
    # IF, threshold 1, soft reset: 0.4, 0.8, 1.2 (fire -> 0.2), 0.6, 1.0 (fire)
    spikes = IF()(seq(0.4, 0.4, 0.4, 0.4, 0.4))
    assert spikes.flatten().tolist() == [0, 0, 1, 0, 1]


def test_hard_reset_with_decay_input_hand_computed():
    # decay 0.5 with decay_input: v = 0.5 u + 0.5 x -> 1.0 (fire), then 0 + 0.5*1.0 = 0.5, 0.25+0.9
    cfg = neuron_config("tdbn", decay_input=True)
    spikes, v = lif_multistep(seq(2.0, 1.0, 1.8), cfg, True)
    assert spikes.flatten().tolist() == [1, 0, 1]
    assert torch.allclose(v.flatten(), seq(1.0, 0.5, 1.15).flatten())


def test_threshold_is_configurable():
    spikes = LIF("tdbn", threshold=2.0)(seq(1.5, 1.5))  # 1.5, 2.25
    assert spikes.flatten().tolist() == [0, 1]


def test_closed_form_gradient_two_steps_hard_reset():
    # tdbn, T=2, x = (1.2, 0.5): v1 = 1.2 fires, u1 = v1 (1 - s1), v2 = 0.5 u1 + x2 = 0.5.
    # sg(x) = max(0, 1 - |x|) (triangle, alpha 1); sg(v1 - 1) = 0.8, sg(v2 - 1) = 0.5.
    # L = s1 + s2: dL/dx2 = sg2 = 0.5
    # dL/dx1 = sg1 + 0.5 * sg2 * du1/dv1, du1/dv1 = (1 - s1) - v1 sg1 = -0.96 (reset not detached)
    x = seq(1.2, 0.5).requires_grad_(True)
    LIF("tdbn")(x).sum().backward()
    assert torch.allclose(x.grad.flatten(), torch.tensor([0.8 + 0.5 * 0.5 * -0.96, 0.5]).double())


CASES = list(itertools.product(["hard", "soft"], [False, True], [False, True], list(SURROGATES)))


@pytest.mark.parametrize(("reset", "detach", "decay_input", "surrogate"), CASES)
def test_matches_step_by_step_autograd_reference(reset, detach, decay_input, surrogate):
    torch.manual_seed(0)
    cfg = neuron_config(
        "tdbn",
        decay=0.7,
        reset=reset,
        detach_reset=detach,
        decay_input=decay_input,
        surrogate=surrogate,
        alpha=1.7,
    )
    x = (torch.rand(6, 3, 5, dtype=torch.float64) * 2.4).requires_grad_(True)
    weights = torch.randn(6, 3, 5, dtype=torch.float64)
    ours = lif_multistep(x, cfg)
    (g_ours,) = torch.autograd.grad((ours * weights).sum(), x)
    ref = reference_lif(x, cfg)
    (g_ref,) = torch.autograd.grad((ref * weights).sum(), x)
    assert torch.equal(ours, ref)
    assert ours.sum() > 0  # the case exercises firing and resets
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(SURROGATES))
def test_surrogate_is_derivative_of_its_primitive(name):
    # Finite differences of the closed-form primitive, at points away from the kinks.
    alpha = 2.5
    x = torch.linspace(-1.5, 1.5, 301, dtype=torch.float64)
    kinks = torch.tensor([-1 / alpha, 0.0, 1 / alpha, -0.5 / alpha, 0.5 / alpha]).double()
    x = x[(x.unsqueeze(1) - kinks).abs().min(1).values > 1e-3]
    h = 1e-6
    from reference import PRIMITIVES

    fd = (PRIMITIVES[name](x + h, alpha) - PRIMITIVES[name](x - h, alpha)) / (2 * h)
    before = x.clone()
    ours = surrogate_derivative(name, x, alpha)
    assert torch.equal(x, before)  # the public function leaves its input alone
    torch.testing.assert_close(ours, fd, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours, primitive_derivative(name, x, alpha))


def test_surrogate_peaks():
    zero = torch.zeros(1)
    assert surrogate_derivative("triangle", zero, 1.0).item() == 1.0
    assert surrogate_derivative("sigmoid", zero, 4.0).item() == 1.0
    assert math.isclose(surrogate_derivative("atan", zero, 2.0).item(), 1.0)


def test_stateless_between_calls():
    lif = LIF("ratebp")
    x = torch.rand(4, 2, 8) * 2
    assert torch.equal(lif(x), lif(x))


def test_inference_without_grad_matches_training_forward():
    x = torch.rand(5, 4, 6) * 2
    with torch.no_grad():
        a = LIF("tdbn")(x)
    b = LIF("tdbn")(x.clone().requires_grad_(True))
    assert torch.equal(a, b.detach())
    assert not b.grad_fn.__class__.__name__.startswith("torch")  # our autograd function


def test_backward_keeps_only_one_float_tensor():
    # The function saves the pre-reset membrane (one float per element) and nothing else.
    x = (torch.rand(4, 3, 7) * 2).requires_grad_(True)
    out = LIF("tdbn")(x)
    saved = out.grad_fn.saved_tensors
    assert len(saved) == 1 and saved[0].shape == x.shape


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"decay": 1.5}, "decay"),
        ({"decay": -0.1}, "decay"),
        ({"threshold": 0.0}, "threshold"),
        ({"reset": "zero"}, "reset"),
        ({"surrogate": "sigmoidd"}, "sigmoid"),
        ({"alpha": -1.0}, "alpha"),
        ({"tau": 2.0}, r"neuron_kwargs.tau: spikedistill's neuron takes decay = 1 - 1/tau"),
        ({"beta": 0.9}, r"neuron_kwargs.beta: spikedistill's neuron takes decay = beta"),
        ({"v_threshold": 0.5}, r"neuron_kwargs.v_threshold: spikedistill's neuron takes thr"),
        ({"tua": 2.0}, "unknown option 'neuron_kwargs.tua' of the neuron"),
        ({"threshold": "abc"}, "neuron_kwargs.threshold: expected float"),
    ],
)
def test_invalid_neuron_options_raise_clear_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        neuron_config("tdbn", **overrides)


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(UnknownNameError, match="ratebp"):
        neuron_config("rate-bp")
    # "lif" is close to "if", the one preset without a leak: each preset says what it is
    with pytest.raises(UnknownNameError, match=r"if \(decay 1, soft reset\).*tdbn \(decay 0.5"):
        neuron_config("lif")
