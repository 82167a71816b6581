"""Every neuron backend against the pure-PyTorch reference: identical spikes, equal gradients."""

import numpy as np
import pytest
import torch

from spikedistill.errors import ConfigError, UnknownNameError
from spikedistill.spiking import (
    LIF,
    LIF_BACKENDS,
    choose_backend,
    lif_multistep,
    neuron_config,
    set_backend,
)
from spikedistill.spiking.kernels import LIFBackend, clear_backend_choices

CONFIGS = [  # the presets and the reset/surrogate variants they leave out
    neuron_config("tdbn"),
    neuron_config("ratebp"),
    neuron_config("if"),
    neuron_config("tdbn", reset="soft", decay_input=True, surrogate="atan", alpha=1.7),
    neuron_config("tdbn", detach_reset=True, decay=0.8, surrogate="rectangle", threshold=0.6),
]
FAST = [  # a backend this machine cannot run (triton not installed) is skipped, saying why
    pytest.param(name, marks=pytest.mark.skipif(bool(reason), reason=str(reason)))
    for name in LIF_BACKENDS
    if name != "torch"
    for reason in [LIF_BACKENDS.get(name).unavailable(torch.device("cpu"))]
]


@pytest.mark.parametrize("backend", [p for p in FAST if p.values[0] != "triton"])  # see below
def test_a_compiled_neuron_runs_each_backend_like_the_reference(backend):
    """``train.compile`` traces the neuron into the model's graph (there torch 2.13 refused
    the compile backend's saved membrane, a view). Dynamo cannot trace Triton's interpreter:
    on a GPU, tests/test_gpu.py compiles the Triton backend."""
    cfg = neuron_config("tdbn", decay=0.8)
    torch.manual_seed(0)
    x = torch.randn(4, 3, 2, 5, 5) * 1.5 + 0.5
    weights = torch.randn_like(x)
    neuron = torch.compile(LIF(cfg, backend=backend))
    x_grad = x.clone().requires_grad_(True)
    try:
        spikes = neuron(x_grad)
        (grad,) = torch.autograd.grad((spikes * weights).sum(), x_grad)
    finally:  # the compiled graph's fake tensors go now, not in a later test of this worker
        torch._dynamo.reset()
    ref_spikes, ref_grad = _run(cfg, x, weights)
    assert torch.equal(spikes, ref_spikes) and 0 < spikes.mean() < 1
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5)


def _run(cfg, x, weights, backend="torch"):
    x = x.clone().requires_grad_(True)
    spikes = lif_multistep(x, cfg, backend=backend)
    (grad,) = torch.autograd.grad((spikes * weights).sum(), x)
    return spikes, grad


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.reset}-{c.surrogate}-{c.decay}")
def test_backend_matches_reference(backend, cfg):
    torch.manual_seed(0)
    x = torch.randn(5, 4, 3, 6, 6) * 1.5 + 0.5
    weights = torch.randn_like(x)
    ref_spikes, ref_grad = _run(cfg, x, weights)
    spikes, grad = _run(cfg, x, weights, backend)
    assert torch.equal(spikes, ref_spikes)
    assert 0 < spikes.mean() < 1
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5)


def charge_on_the_threshold(cfg, n: int = 4096) -> torch.Tensor:
    """``x [2, n]``: step 0 below the threshold, step 1 chosen so that the charge
    ``k x_1 + decay k x_0`` lands within a few ulps of it."""
    g = torch.Generator().manual_seed(0)
    k = 1.0 - cfg.decay if cfg.decay_input else 1.0
    x0 = (torch.rand(n, generator=g) * 0.6 + 0.3) * cfg.threshold / k
    ulps = torch.randint(-3, 4, (n,), generator=g).double() * torch.finfo(torch.float32).eps
    x1 = (cfg.threshold - cfg.decay * k * x0.double()) / k * (1 + ulps)
    return torch.stack([x0, x1.float()])


@pytest.mark.parametrize("backend", ["torch", *FAST])
@pytest.mark.parametrize(
    "cfg",  # a decay that is not a power of two, so that decay * u rounds
    [neuron_config("tdbn", decay=0.8), neuron_config("tdbn", decay=0.7, decay_input=True)],
    ids=["tdbn", "decay_input"],
)
def test_charges_within_rounding_of_the_threshold_fire_alike(backend, cfg):
    """Each product and the sum rounded on its own (numpy, float32): the bits every backend
    must fire; a fused multiply-add (one rounding) fires others, so the test can tell."""
    x = charge_on_the_threshold(cfg)
    f32 = np.float32
    k = f32(1.0 - cfg.decay) if cfg.decay_input else f32(1.0)
    y0, y1 = x[0].numpy() * k, x[1].numpy() * k
    expected = (y1 + f32(cfg.decay) * y0) >= f32(cfg.threshold)
    fused = (y1.astype(np.float64) + np.float64(f32(cfg.decay)) * y0).astype(f32) >= cfg.threshold
    assert 0.2 < expected.mean() < 0.8 and (fused != expected).any()
    spikes = lif_multistep(x, cfg, backend=backend)
    assert not spikes[0].any()
    assert np.array_equal(spikes[1].numpy().astype(bool), expected)


def test_backend_selection_is_per_model_and_checked():
    assert LIF().backend == "auto"  # the library default, for every neuron
    assert choose_backend("auto", "cpu") == "cpp"  # CPU: the C++ kernels (CI has g++, ninja)
    model = torch.nn.Sequential(LIF(), torch.nn.Sequential(LIF()))
    other = torch.nn.Sequential(LIF())
    assert set_backend(model, "torch") == "torch"
    assert [m.backend for m in model.modules() if isinstance(m, LIF)] == ["torch", "torch"]
    assert other[0].backend == "auto"  # nothing process-wide changed
    with pytest.raises(UnknownNameError, match="compile"):
        choose_backend("complie")
    with pytest.raises(ConfigError, match="cannot run on meta"):
        choose_backend("compile", "meta")
    with pytest.raises(ConfigError, match="CPU tensors only"):
        set_backend(model, "cpp", "meta")
    assert model[0].backend == "torch"


def test_auto_falls_back_to_torch_when_cpp_cannot_build(monkeypatch):
    from spikedistill.spiking.kernels import cpp

    monkeypatch.setattr(cpp, "missing_tools", lambda: "no C++ compiler on PATH")
    clear_backend_choices()
    try:
        with pytest.warns(UserWarning, match="no C\\+\\+ compiler on PATH; using 'torch'"):
            assert choose_backend("auto", "cpu") == "torch"
        with pytest.raises(ConfigError, match="'cpp' cannot run on cpu: no C\\+\\+ compiler"):
            choose_backend("cpp", "cpu")
    finally:
        monkeypatch.undo()
        clear_backend_choices()
    assert choose_backend("auto", "cpu") == "cpp"


def test_trainer_runs_on_the_configured_backend(tmp_path):
    """``train.neuron_backend`` is set on the run's model, and on nothing else."""
    from spikedistill.engine import trainer
    from spikedistill.engine.config import load_config

    cfg = load_config(
        None,
        [
            "data.name=digits",
            "data.train_subset=128",
            "data.batch_size=64",
            "model.name=convnet3",
            "model.spiking=true",
            "model.T=2",
            "train.epochs=1",
            "train.neuron_backend=torch",
        ],
    )
    run = trainer.Trainer(cfg, tmp_path / "run")
    run.fit()
    neurons = [m for m in run.model.modules() if isinstance(m, LIF)]
    assert neurons and all(m.backend == "torch" for m in neurons)
    assert "T=2, torch neurons" in (tmp_path / "run" / "log.txt").read_text()
    assert LIF().backend == "auto"


#: backends with a spike pass of their own (the others run the reference's)
OWN_SPIKE_PASS = [
    p for p in FAST if type(LIF_BACKENDS.get(p.values[0])).norm_record is not LIFBackend.norm_record
]


@pytest.mark.parametrize(
    ("backend", "record_chunk"),
    [
        pytest.param(p.values[0], chunk, marks=p.marks, id=f"{p.values[0]}-{chunk}")
        for p in OWN_SPIKE_PASS
        for chunk in ([None, 100_000] if p.values[0] == "compile" else [None])  # its chunking
    ],
)
def test_rate_backprop_spike_pass_is_the_same_on_every_backend(backend, record_chunk, monkeypatch):
    """The units' spike-pass kernels (BatchNorm + LIF + spike counts + eligibility) of a fast
    backend give the reference's spikes, hence logits, and its eligibilities (so gradients);
    also when the compiled scan takes a layer one image at a time (``record_chunk``)."""
    import copy

    from spikedistill.models import build_model
    from spikedistill.ratebp import RateBackprop
    from spikedistill.spiking.kernels import compiled

    if record_chunk is not None:  # 5 steps of a 16 x 32 x 32 map per image: one per call
        monkeypatch.setattr(compiled, "RECORD_CHUNK", record_chunk)

    torch.manual_seed(0)
    model = build_model("resnet8", 10, spiking=True, T=5, neuron="ratebp").train()
    set_backend(model, "torch")
    other = copy.deepcopy(model)
    set_backend(other, backend)
    x = torch.randn(4, 3, 32, 32)
    ref_view = RateBackprop(model)
    ref_view(x).sum().backward()
    view = RateBackprop(other)
    view(x).sum().backward()
    assert torch.equal(view.last_spike_logits, ref_view.last_spike_logits)
    for p, q in zip(other.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5)


def test_a_neuron_refuses_an_unknown_backend_when_built():
    with pytest.raises(UnknownNameError, match="compile"):
        LIF(backend="complie")
