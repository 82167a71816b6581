import itertools

import pytest
import torch
from torch import nn

from reference import reference_lif
from spikedistill.errors import ConfigError
from spikedistill.models import ZooModel, build_model
from spikedistill.spiking import FoldedNeuron, neuron_config
from spikedistill.spiking.rate_stats import rate_and_eligibility
from spikedistill.spiking.ratebp import RateBackprop


@pytest.mark.parametrize(
    ("reset", "detach", "decay_input"), list(itertools.product(["hard", "soft"], [0, 1], [0, 1]))
)
def test_eligibility_is_the_slope_of_rate_versus_constant_input(reset, detach, decay_input):
    # e must equal d(mean_t s_t)/d(xbar) for x_t = xbar at every step, computed here by autograd
    # through the independent step-by-step reference neuron (surrogate in backward)
    cfg = neuron_config(
        "tdbn",
        decay=0.6,
        reset=reset,
        detach_reset=bool(detach),
        decay_input=bool(decay_input),
        surrogate="sigmoid",
        alpha=2.0,
    )
    torch.manual_seed(0)
    xbar = (torch.rand(64, dtype=torch.float64) * 3).requires_grad_(True)
    T = 6
    rate = reference_lif(xbar.expand(T, -1), cfg).mean(0)
    (slope,) = torch.autograd.grad(rate.sum(), xbar)
    _, r, e = rate_and_eligibility(xbar.detach().expand(T, -1).contiguous(), cfg)
    assert torch.equal(r, rate.detach())
    torch.testing.assert_close(e, slope, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["resnet8", "resnet19", "wrn_16_2"])
def test_rate_pass_logits_equal_spike_pass_mean_logits(name):
    torch.manual_seed(0)
    model = build_model(name, 10, spiking=True, T=4, neuron="ratebp").train()
    view = RateBackprop(model)
    logits = view(torch.randn(6, 3, 32, 32))
    assert logits.requires_grad and logits.shape == (6, 10)
    torch.testing.assert_close(logits, view.last_spike_logits.mean(0), rtol=0, atol=1e-5)


class OneLayer(ZooModel):
    """x -> 1x1 conv (stem) -> LIF -> flatten -> fixed linear readout."""

    def __init__(self, T: int) -> None:
        super().__init__(spiking=True, T=T, neuron="ratebp")
        self.stem = nn.Conv2d(1, 3, 1, bias=False)
        self.stem_act = self.act()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 2 * 2, 5, bias=False))


def test_one_layer_input_gradient_is_eligibility_times_rate_gradient():
    torch.manual_seed(0)
    model = OneLayer(T=5).train()
    model.stem.weight.data.fill_(1.0)
    x = torch.rand(4, 1, 2, 2) * 2.5
    g = torch.randn(4, 5)
    captured = {}
    model.stem.register_forward_hook(lambda m, i, o: captured.__setitem__("current", o))
    logits = RateBackprop(model)(x)
    current = captured["current"]  # the rate pass's neuron input [B, 3, 2, 2]
    current.retain_grad()
    (logits * g).sum().backward()
    # by hand: r and e from the spike pass; dL/dr = W^T g (linear readout); dL/dx = e * dL/dr
    drive = x.expand(4, 3, 2, 2)
    _, r, e = rate_and_eligibility(
        drive.unsqueeze(0).expand(5, -1, -1, -1, -1).contiguous(), model.neuron_config
    )
    dl_dr = (g @ model.head[1].weight).view(4, 3, 2, 2)
    torch.testing.assert_close(logits, r.flatten(1) @ model.head[1].weight.T)
    torch.testing.assert_close(current.grad, e * dl_dr)


def test_batchnorm_running_stats_move_once_per_step():
    torch.manual_seed(0)
    a = build_model("resnet8", 10, spiking=True, T=3, neuron="ratebp").train()
    b = build_model("resnet8", 10, spiking=True, T=3, neuron="ratebp").train()
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 3, 32, 32)
    RateBackprop(a)(x).sum().backward()
    with torch.no_grad():
        b(x)  # one plain train-mode forward
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        if "running" in k or "num_batches" in k:
            torch.testing.assert_close(va, vb, rtol=0, atol=1e-6)


def test_plain_forward_in_eval_or_no_grad_and_nothing_left_patched():
    model = build_model("resnet8", 10, spiking=True, T=3, neuron="ratebp")
    view = RateBackprop(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert view(x).shape == (2, 10) and view.last_spike_logits is None
    model.eval()
    view(x)  # eval: the plain forward, no rate pass
    assert view.last_spike_logits is None
    model.train()
    view(x)
    assert view.last_spike_logits is not None
    assert all("forward" not in vars(m) for m in model.modules())
    assert {m.T for m in model.modules() if isinstance(m, FoldedNeuron)} == {3}


def test_rate_backprop_needs_a_spiking_model_with_our_neurons():
    with pytest.raises(ConfigError, match="needs a spiking model"):
        RateBackprop(build_model("resnet8", 10))


@pytest.mark.parametrize("spec", ["kd", "fitnet", "sastc", "samd", "nld", "brd", "samd+nld"])
def test_every_method_trains_under_rate_backprop(spec):
    from spikedistill.distill import FrozenTeacher
    from spikedistill.distill.objective import DistillObjective, build_method, parse_methods

    torch.manual_seed(0)
    student = build_model("resnet8", 10, spiking=True, T=3, neuron="ratebp").train()
    teacher = FrozenTeacher(build_model("resnet8", 10))
    methods = [
        build_method(n, student, teacher.model, {"batch_size": 8} if n == "sastc" else {})
        for n in parse_methods(spec)
    ]
    objective = DistillObjective(student, teacher, methods)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    objective.build(student, x, y)
    view = RateBackprop(student)
    batch = objective.distill_batch(view, x, y)
    assert all(f.shape[0] == 1 for f in batch.student_features.values())  # rate maps
    _, terms = objective(view, x, y)
    assert all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    assert student.stem[0].weight.grad.abs().sum() > 0


def _straight_through_bn_by_autograd(x, mu, var, weight, bias, eps):
    """The same straight-through BN written as an autograd chain (methods.md §4.2)."""
    dims = [0, 2, 3]
    mean, v = x.mean(dims), x.var(dims, unbiased=False)
    mean = mean + (mu - mean).detach()
    v = v + (var - v).detach()
    shape = (1, -1, 1, 1)
    out = (x - mean.view(shape)) * torch.rsqrt(v + eps).view(shape)
    return out * weight.view(shape) + bias.view(shape)


def test_straight_through_batchnorm_matches_its_autograd_chain():
    from spikedistill.spiking.ratebp import StraightThroughBatchNorm

    torch.manual_seed(0)
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    mu, var = torch.randn(3, dtype=torch.float64), torch.rand(3, dtype=torch.float64) + 0.5
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    g = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    ours = StraightThroughBatchNorm.apply(x, mu, var, w, b, 1e-5)
    grads = torch.autograd.grad(ours, (x, w, b), g)
    ref = _straight_through_bn_by_autograd(x, mu, var, w, b, 1e-5)
    ref_grads = torch.autograd.grad(ref, (x, w, b), g)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    for a, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, r, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["resnet8", "vgg8", "pyramidnet20", "wrn_16_2", "convnet3"])
def test_spike_pass_is_the_plain_forward(name):
    """bool spikes, per-step layers and in-place BN change no value of the train forward."""
    torch.manual_seed(0)
    shape = (1, 28, 28) if name == "convnet3" else (3, 32, 32)
    options = {"in_channels": 1} if name == "convnet3" else {}
    model = build_model(name, 10, spiking=True, T=3, neuron="ratebp", **options).train()
    x = torch.randn(4, *shape)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        plain = model(x, per_step=True)
    model.load_state_dict(state)  # undo the running-stat update
    view = RateBackprop(model)
    view(x)
    torch.testing.assert_close(view.last_spike_logits, plain, rtol=1e-5, atol=1e-5)


def test_block_checkpointing_is_bypassed_by_the_rate_pass():
    """A model built with ``checkpoint_blocks`` trains by Rate-BP exactly as without (the rate
    graph is T-free; a recompute would miss the rate-pass forwards) and keeps its flag."""
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    grads = []
    for flag in (False, True):
        torch.manual_seed(0)
        model = build_model("resnet8", 10, spiking=True, T=3, checkpoint_blocks=flag)
        nn.functional.cross_entropy(RateBackprop(model)(x), y).backward()
        grads.append([p.grad for p in model.parameters()])
        assert model.checkpoint_blocks is flag and model.T == 3
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
