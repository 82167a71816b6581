import itertools

import pytest
import torch
from torch import nn

from reference import reference_lif
from spikedistill.errors import ConfigError
from spikedistill.models import ZooModel, build_model
from spikedistill.ratebp import RateBackprop
from spikedistill.spiking import FoldedNeuron, neuron_config
from spikedistill.spiking.kernels.record import spike_statistics


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
    _, n, e = spike_statistics(xbar.detach().expand(T, -1).contiguous(), cfg)
    assert torch.equal(n.double() / T, rate.detach())
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
    _, n, e = spike_statistics(
        drive.unsqueeze(0).expand(5, -1, -1, -1, -1).contiguous(), model.neuron_config
    )
    dl_dr = (g @ model.head[1].weight).view(4, 3, 2, 2)
    r = n.float() / 5
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
    from spikedistill.ratebp.rate_pass import StraightThroughBatchNorm

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


def _rate_step(model, x, units=True):
    """One Rate-BP step; ``units=False`` declines every unit (the layer-by-layer spike pass)."""
    view = RateBackprop(model, units=units, keep_records=True)
    logits = view(x)
    (logits * torch.arange(10.0, dtype=logits.dtype)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    return view.last_spike_logits, logits.detach(), grads, view.last_records


@pytest.mark.parametrize("T", [3, 9])  # 9 > STORED_STEPS: units run in channel chunks
@pytest.mark.parametrize("name", ["resnet8", "convnet3", "wrn_16_2", "pyramidnet20", "vgg8"])
def test_units_record_what_the_layer_by_layer_spike_pass_records(name, T):
    channels, size = (1, 28) if name == "convnet3" else (3, 32)
    torch.manual_seed(0)
    model = build_model(name, 10, spiking=True, T=T, neuron="ratebp", in_channels=channels)
    model = model.double().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, channels, size, size, dtype=torch.float64)
    runs = []
    for units in (True, False):
        model.load_state_dict(state)
        model.zero_grad()
        runs.append((*_rate_step(model, x, units), model.state_dict()))
        runs[-1] = (*runs[-1][:4], {k: v.clone() for k, v in runs[-1][4].items()})
    (spk_a, log_a, grad_a, rec_a, st_a), (spk_b, log_b, grad_b, rec_b, st_b) = runs
    torch.testing.assert_close(spk_a, spk_b, rtol=0, atol=1e-12)
    torch.testing.assert_close(log_a, log_b, rtol=0, atol=1e-12)
    assert rec_a.keys() == rec_b.keys()
    for m in rec_a:
        for a, b in zip(rec_a[m], rec_b[m], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    for a, b in zip(grad_a, grad_b, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    for k in st_a:
        torch.testing.assert_close(st_a[k], st_b[k], rtol=0, atol=1e-12)


@pytest.mark.parametrize("stored", [4, 3, 2])
def test_a_unit_keeps_a_bounded_float_pre_activation(monkeypatch, stored):
    """Beyond ``stored_steps`` steps a unit's channels run in chunks: its float buffer holds at
    most ``stored_steps`` steps' worth of the layer, whatever T; the results do not change."""
    from spikedistill.ratebp.units import UnitRecorder

    sizes = []
    real = UnitRecorder.pre_activation

    def spy(self, conv, x, T, rows, sl, steps):
        out = real(self, conv, x, T, rows, sl, steps)
        sizes.append((out.numel(), rows * conv.out_channels * out[0, 0].numel()))
        return out

    monkeypatch.setattr(UnitRecorder, "pre_activation", spy)
    conv_inputs = []  # images per convolution call
    real_conv = nn.Conv2d._conv_forward

    def conv_spy(self, x, weight, bias):
        conv_inputs.append(x.shape[0])
        return real_conv(self, x, weight, bias)

    monkeypatch.setattr(nn.Conv2d, "_conv_forward", conv_spy)
    torch.manual_seed(0)
    model = build_model("convnet3", 10, spiking=True, T=16, neuron="ratebp", in_channels=1)
    x = torch.randn(4, 1, 28, 28)
    view = RateBackprop(model.train(), stored_steps=stored)
    view(x).sum().backward()
    assert len(sizes) > 3  # layer1 and layer2 ran in chunks (the stem is static)
    assert all(numel <= stored * one_step for numel, one_step in sizes)
    # a unit's convolution reads at most stored_steps steps of spikes per call, as floats
    assert max(conv_inputs) <= stored * x.shape[0]
    whole = RateBackprop(model, stored_steps=16)  # T <= stored_steps: no chunks
    torch.testing.assert_close(whole(x), view(x), rtol=0, atol=1e-6)
    torch.testing.assert_close(whole.last_spike_logits, view.last_spike_logits, rtol=0, atol=1e-6)
    with pytest.raises(ConfigError, match="stored_steps must be an integer >= 1"):
        RateBackprop(model, stored_steps=0)


@pytest.mark.parametrize(("reset", "chunk"), [("soft", None), ("hard", None), ("hard", 16)])
def test_eligibility_of_a_copy_in_place_and_for_a_static_drive_agree(reset, chunk, monkeypatch):
    from spikedistill.spiking.kernels import record

    if chunk is not None:  # 105 neurons scanned 16 at a time, the last chunk short
        monkeypatch.setattr(record, "SCAN_CHUNK", chunk)

    cfg = neuron_config("ratebp", reset=reset)
    torch.manual_seed(0)
    drive = torch.rand(3, 5, 7, dtype=torch.float64) * 2
    steps = drive.unsqueeze(0).expand(10, -1, -1, -1)  # static over T = 10
    ref = spike_statistics(steps.contiguous(), cfg)  # scratch buffers
    static = spike_statistics(steps, cfg)
    buffer = steps.contiguous()
    in_place = spike_statistics(buffer, cfg, writable=True)
    for a, b, c in zip(ref[:2], static[:2], in_place[:2], strict=True):  # spikes and counts
        assert torch.equal(a, b) and torch.equal(a, c)
    for elig in (static[2], in_place[2]):  # vectorised and scalar loops may round apart
        torch.testing.assert_close(elig, ref[2], rtol=0, atol=1e-14)
    assert not torch.equal(buffer, steps)  # the writable drive now holds the membranes


def test_spike_pass_max_pool_is_the_or_of_the_window():
    from spikedistill.ratebp.packed_ops import or_pool
    from spikedistill.spiking.max_pool import is_tiling_max_pool

    even = torch.rand(6, 4, 8, 10) < 0.3  # k = 2 takes the int16 path here
    for spikes in (even, torch.rand(6, 4, 9, 10) < 0.3, even.transpose(-1, -2)):
        for k in (2, 3):
            pool = nn.MaxPool2d(k)
            assert is_tiling_max_pool(pool)
            expected = pool(spikes.float()).bool()
            assert torch.equal(or_pool(spikes, k), expected)
    assert not is_tiling_max_pool(nn.MaxPool2d(3, 2, 1))  # overlapping windows: max-pool


def test_rate_pass_max_pool_keeps_only_indices_and_matches_the_max_pool_gradient():
    from spikedistill.spiking.max_pool import TilingMaxPool

    torch.manual_seed(0)
    rates = (torch.randint(0, 5, (3, 4, 8, 9)).double() / 4).requires_grad_(True)  # many ties
    g = torch.randn(3, 4, 4, 4, dtype=torch.float64)
    ours = TilingMaxPool.apply(rates, 2)
    ref = nn.functional.max_pool2d(rates, 2)
    assert torch.equal(ours, ref)
    assert [t.dtype for t in ours.grad_fn.saved_tensors] == [torch.int64]
    (grad_ours,) = torch.autograd.grad(ours, rates, g)
    (grad_ref,) = torch.autograd.grad(ref, rates, g)
    assert torch.equal(grad_ours, grad_ref)


def test_an_adaptive_pool_to_the_input_size_is_the_identity():
    from spikedistill.spiking.layers import AdaptiveAvgPool2d, pool_is_identity

    x = torch.randn(2, 3, 7, 7)
    pool = AdaptiveAvgPool2d(7)
    assert pool(x) is x and pool_is_identity(nn.AdaptiveAvgPool2d((None, 7)), x)
    torch.testing.assert_close(AdaptiveAvgPool2d(1)(x), x.mean((2, 3), keepdim=True))
    assert not pool_is_identity(nn.AdaptiveAvgPool2d(3), x)


def test_rate_pass_saves_rates_as_counts_with_the_same_gradients(monkeypatch):
    """Layers fed by the rate pass's firing rates save the spike counts (one byte) and rebuild
    the rates bit for bit: the gradients equal those of rates saved as floats; a rate changed
    in place after it was made is saved as it is."""
    import contextlib

    from spikedistill.models import base
    from spikedistill.spiking import saved_spikes

    packed = []

    class Spy(saved_spikes.PackedSaved):
        def __init__(self, bits, dtype, divisor):
            super().__init__(bits, dtype, divisor)
            packed.append((bits.dtype, divisor))

    monkeypatch.setattr(saved_spikes, "PackedSaved", Spy)
    torch.manual_seed(0)
    model = build_model("resnet8", 10, spiking=True, T=3, neuron="ratebp").train()
    x = torch.randn(2, 3, 32, 32)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def grads():
        model.load_state_dict(state)  # the same BatchNorm running stats for both steps
        model.zero_grad()
        RateBackprop(model)(x).square().sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    packed_grads = grads()
    assert packed and all(p == (torch.uint8, 3) for p in packed)
    monkeypatch.setattr(base, "spikes_saved_as_bool", contextlib.nullcontext)
    for a, b in zip(packed_grads, grads(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    rates = saved_spikes.mark_rates(torch.tensor([1.0, 2.0]) / 3, torch.tensor([1, 2]), 3)
    rates.add_(1.0)  # no longer what the counts say
    with saved_spikes.spikes_saved_as_bool():
        w = torch.ones(2, requires_grad=True)
        y = (w * rates).sum()
    (grad,) = torch.autograd.grad(y, w)
    torch.testing.assert_close(grad, rates)


def test_a_rate_step_leaves_no_reference_cycle():
    """The derived networks go when the step returns, not at the next garbage collection:
    they hold the spike pass's records (a resnet19 step held 55 MB more until then)."""
    import gc

    model = build_model("resnet8", 10, spiking=True, T=2, neuron="ratebp").train()
    view = RateBackprop(model)
    x = torch.randn(2, 3, 32, 32)
    view(x).sum().backward()  # one-time objects
    while gc.collect():  # an earlier test's garbage can free more once collected (finalizers)
        pass
    gc.disable()
    try:
        view(x).sum().backward()
        assert gc.collect() == 0
    finally:
        gc.enable()
