"""BatchNorm + LIF as one op (``spiking.norm_lif``) against BatchNorm followed by the independent
reference neuron, and fused zoo models against the same models run layer by layer."""

import copy

import pytest
import torch
from torch import nn

from reference import grad_fn_names, reference_lif
from spikedistill.models import build_model
from spikedistill.spiking import LIF, FoldedNeuron, choose_backend, neuron_config, set_backend
from spikedistill.spiking.max_pool import is_tiling_max_pool
from spikedistill.spiking.norm_lif import fusable, norm_act

CONFIGS = [
    neuron_config("tdbn"),
    neuron_config("ratebp"),
    neuron_config("if"),
    neuron_config("tdbn", reset="soft", decay_input=True, surrogate="atan", alpha=1.7),
    neuron_config("tdbn", detach_reset=True, decay=0.8, surrogate="rectangle", threshold=0.6),
]
VARIANTS = ["plain", "spike_residual", "float_residual", "static"]
T, B = 4, 3


def _inputs(variant):
    g = torch.Generator().manual_seed(0)
    rows = B if variant == "static" else T * B
    x = torch.randn(rows, 5, 4, 4, generator=g, dtype=torch.float64) * 2 + 0.3
    residual = None
    if variant == "spike_residual":
        residual = (torch.rand(T * B, 5, 4, 4, generator=g) < 0.3).double()
    elif variant == "float_residual":
        residual = torch.randn(T * B, 5, 4, 4, generator=g, dtype=torch.float64)
    weights = torch.randn(T * B, 5, 4, 4, generator=g, dtype=torch.float64)
    return x, residual, weights


def _bn():
    torch.manual_seed(1)
    bn = nn.BatchNorm2d(5).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    return bn.train()


def _reference(cfg, variant):
    """BatchNorm, residual sum and the step-by-step autograd neuron (tests/reference.py)."""
    x, residual, weights = _inputs(variant)
    bn = _bn()
    x.requires_grad_(True)
    if residual is not None:
        residual.requires_grad_(True)
    y = bn(x)
    if residual is not None:
        y = y + residual
    steps = (
        y.unsqueeze(0).expand(T, *y.shape) if variant == "static" else y.view(T, B, *y.shape[1:])
    )
    spikes = reference_lif(steps, cfg).flatten(0, 1)
    return _grads(spikes, weights, x, residual, bn)


def _fused(cfg, variant, backend="auto"):
    x, residual, weights = _inputs(variant)
    bn = _bn()
    act = FoldedNeuron(LIF(cfg, backend=backend), T)
    x.requires_grad_(True)
    if residual is not None:
        residual.requires_grad_(True)
    assert fusable(bn, act, x)
    spikes = norm_act(bn, act, x, residual=residual, static=variant == "static")
    assert type(spikes.grad_fn).__name__ == "BatchNormLIFBackward"
    return _grads(spikes, weights, x, residual, bn)


def _grads(spikes, weights, x, residual, bn):
    inputs = [x, bn.weight, bn.bias] + ([residual] if residual is not None else [])
    grads = torch.autograd.grad((spikes * weights).sum(), inputs)
    return spikes.detach(), grads, (bn.running_mean.clone(), bn.running_var.clone())


def _check(cfg, variant, backend):
    ref_spikes, ref_grads, ref_stats = _reference(cfg, variant)
    spikes, grads, stats = _fused(cfg, variant, backend)
    assert torch.equal(spikes, ref_spikes)
    assert 0 < spikes.mean() < 1
    for ours, theirs in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-10)
    for ours, theirs in zip(stats, ref_stats, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-14)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.reset}-{c.surrogate}-{c.decay}")
def test_fused_op_equals_batchnorm_then_reference_neuron(cfg, variant):
    _check(cfg, variant, "torch")


@pytest.mark.parametrize("variant", ["spike_residual", "static"])
@pytest.mark.parametrize("cfg", CONFIGS[:2], ids=["tdbn", "ratebp"])
def test_compiled_fused_op_equals_the_reference(cfg, variant):
    _check(cfg, variant, "compile")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.reset}-{c.surrogate}-{c.decay}")
def test_cpp_fused_op_equals_the_reference(cfg, variant):
    _check(cfg, variant, "cpp")


def _unfused(model: nn.Module) -> nn.Module:
    """A copy run layer by layer: a hook on every BatchNorm keeps it out of the fused op."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.MaxPool2d)):  # the max-pools: as the class runs
            m.register_forward_hook(lambda *args: None)
    return model


MODELS = {  # name -> (input channels and size, BatchNorms that feed a neuron)
    "resnet8": (3, 32, 7),
    "convnet3": (1, 28, 3),
    "vgg8": (3, 32, 5),
    "wrn_16_2": (3, 32, 13),
    "pyramidnet20": (3, 32, 10),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_fused_models_equal_the_layer_by_layer_run(name):
    channels, size, n_fused = MODELS[name]
    torch.manual_seed(0)
    fused = build_model(name, 10, spiking=True, T=3, in_channels=channels).double().train()
    set_backend(fused, "torch")  # the fused op against ATen's BatchNorm, on the reference
    plain = _unfused(fused)
    n_pools = sum(is_tiling_max_pool(m) for m in fused.modules())
    x = torch.randn(4, channels, size, size, dtype=torch.float64)
    weights = torch.randn(3, 4, 10, dtype=torch.float64)
    outputs = []
    for model in (fused, plain):
        logits = model(x, per_step=True)
        outputs.append(logits.detach())
        names = grad_fn_names(logits)
        (logits * weights).sum().backward()
        if model is fused:
            assert names.count("BatchNormLIFBackward") == n_fused
            assert names.count("TilingMaxPoolBackward") == n_pools
        else:
            assert "BatchNormLIFBackward" not in names
            assert "TilingMaxPoolBackward" not in names
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    for (n, p), q in zip(fused.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-12, msg=n)
    for a, b in zip(fused.buffers(), plain.buffers(), strict=True):
        assert torch.equal(a, b)


def _saved_activation_bytes(model: nn.Module, x: torch.Tensor, monkeypatch) -> int:
    """Bytes that autograd keeps for backward in one training forward, as packed (spikes as
    bool), each storage once, parameters excluded."""
    from spikedistill.spiking import saved_spikes

    params = {p.data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}
    real_hooks = torch.autograd.graph.saved_tensors_hooks

    def counting_hooks(pack, unpack):
        def counted(t):
            item = pack(t)
            bits = getattr(item, "bits", item)
            if isinstance(bits, torch.Tensor) and bits.data_ptr() not in params:
                kept[bits.untyped_storage().data_ptr()] = bits.untyped_storage().nbytes()
            return item

        return real_hooks(counted, unpack)

    monkeypatch.setattr(saved_spikes.torch.autograd.graph, "saved_tensors_hooks", counting_hooks)
    loss = model(x).sum()
    monkeypatch.undo()
    del loss
    return sum(kept.values())


def test_fusion_keeps_the_bn_input_and_bool_spikes_instead_of_the_membrane(monkeypatch):
    torch.manual_seed(0)
    model = build_model("resnet8", 10, spiking=True, T=4).train()
    x = torch.randn(8, 3, 32, 32)
    fused = _saved_activation_bytes(model, x, monkeypatch)
    plain = _saved_activation_bytes(_unfused(model), x, monkeypatch)
    sizes: dict[str, list[int]] = {"neuron": [], "projection": []}
    hooks = [
        m.register_forward_hook(lambda m, i, o, k=kind: sizes[k].append(o.numel()))
        for m, kind in (
            *((m, "neuron") for m in model.modules() if isinstance(m, FoldedNeuron)),
            *((b.shortcut, "projection") for b in model.modules() if hasattr(b, "shortcut")),
        )
        if not isinstance(m, nn.Identity)
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    # each neuron drops its float membrane; the last neuron's spikes (read by the average
    # pool, which saves nothing) are now kept as bool; the fused op keeps a float residual
    # (the projection shortcuts' outputs) that the unfused residual sum did not need
    expected = 4 * sum(sizes["neuron"]) - sizes["neuron"][-1] - 4 * sum(sizes["projection"])
    assert plain - fused == expected
    assert fused < 0.65 * plain


def test_what_is_not_fused():
    cfg = neuron_config("tdbn")
    bn, act = nn.BatchNorm2d(3).train(), FoldedNeuron(LIF(cfg), 2)
    x = torch.randn(4, 3, 2, 2, requires_grad=True)
    assert fusable(bn, act, x)
    with torch.no_grad():
        assert not fusable(bn, act, x)
    assert not fusable(bn.eval(), act, x)
    bn.train()
    assert not fusable(bn, nn.ReLU(), x)
    assert not fusable(nn.SyncBatchNorm(3), act, x)
    assert not fusable(bn, act, x.detach().bfloat16())  # autocast: x is not in the BN's dtype
    seen = []
    handle = bn.register_forward_hook(lambda m, i, o: seen.append(o))
    assert not fusable(bn, act, x)
    out = norm_act(bn, act, x)  # run as written, so the hook sees the BatchNorm output
    assert len(seen) == 1 and out.shape == x.shape
    handle.remove()
    act.forward = lambda z, static=False: z  # a replaced forward (Rate-BP does this) is used
    assert not fusable(bn, act, x)


@pytest.mark.parametrize("static", [False, True], ids=["per_step", "static"])
def test_every_spike_pass_rounds_the_drive_alike(static):
    """At float32, with the BatchNorm outputs ``x scale + shift`` within rounding of the
    threshold, the BPTT forward on each backend and Rate-BP's spike pass fire the same bits: they
    all round the multiply and the add separately (a fused multiply-add would flip spikes)."""
    from spikedistill.spiking.kernels import LIF_BACKENDS, NormDrive
    from spikedistill.spiking.kernels.record import norm_spike_statistics
    from spikedistill.spiking.kernels.spike_pack import unpack

    g = torch.Generator().manual_seed(0)
    cfg, steps, rows, channels = neuron_config("tdbn"), 1, 256, 4
    scale = torch.rand(channels, generator=g) * 3 + 0.1
    shift = torch.randn(channels, generator=g) * 2
    at_threshold = (cfg.threshold - shift) / scale
    x = at_threshold.view(1, -1, 1) * (1 + torch.randn(rows, channels, 64, generator=g) * 1e-6)
    fired = {}
    for name in LIF_BACKENDS.names():
        if LIF_BACKENDS.get(name).unavailable(torch.device("cpu")):
            continue  # triton without the package
        choose_backend(name)  # builds what the backend needs
        drive = NormDrive(x, scale, shift, None, steps, static)
        _, bits = LIF_BACKENDS.get(name).norm_forward(drive, cfg)
        fired[name] = bits.reshape(-1)
    drive = NormDrive(x.clone(), scale, shift, None, steps, static)
    packed, _, _ = norm_spike_statistics(drive, cfg)
    fired["rate_bp"] = unpack(packed, steps).reshape(-1).bool()
    assert 0.2 < fired["torch"].float().mean() < 0.8  # the drives straddle the threshold
    assert {"torch", "compile", "cpp", "rate_bp"} <= set(fired)
    for name, bits in fired.items():
        assert torch.equal(bits, fired["torch"]), name


def test_compiled_training_graphs_hold_no_dtype_view_of_a_bool():
    """torch 2.11's Inductor cannot lower a dtype view of a ``bool`` tensor ("torch.bool is not
    supported by torch.iinfo"): ``train.compile`` failed there on the unit's backward, which
    viewed its bool spikes as bytes. The traced forward and backward graphs of a zoo SNN hold
    no such view (on the cpp backend, where the old code put one), checked on the graphs
    themselves, whatever torch runs here."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    graphs = []

    def keep(gm, _inputs):
        graphs.append(gm)
        return make_boxed_func(gm.forward)

    torch.manual_seed(0)
    model = build_model("convnet3", 10, spiking=True, T=2, width=4)
    set_backend(model, choose_backend("cpp", "cpu"), "cpu")
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=aot_autograd(fw_compiler=keep, bw_compiler=keep))
    compiled(torch.randn(4, 1, 28, 28)).sum().backward()
    assert len(graphs) >= 2  # a forward and a backward
    bool_views = [
        node
        for gm in graphs
        for node in gm.graph.nodes
        if node.target is torch.ops.aten.view.dtype
        and torch.bool in (node.args[0].meta["val"].dtype, node.args[1])
    ]
    assert bool_views == []
