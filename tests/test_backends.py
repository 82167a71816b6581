"""Every neuron backend against the pure-PyTorch reference: identical spikes, equal gradients."""

import pytest
import torch

from spikedistill.errors import ConfigError, UnknownNameError
from spikedistill.spiking import (
    LIF_BACKENDS,
    lif_multistep,
    neuron_backend,
    neuron_config,
    use_backend,
)
from spikedistill.spiking.backends import active_backend
from spikedistill.spiking.rate_stats import norm_spike_statistics

CONFIGS = [  # the presets and the reset/surrogate variants they leave out
    neuron_config("tdbn"),
    neuron_config("ratebp"),
    neuron_config("if"),
    neuron_config("tdbn", reset="soft", decay_input=True, surrogate="atan", alpha=1.7),
    neuron_config("tdbn", detach_reset=True, decay=0.8, surrogate="rectangle", threshold=0.6),
]
FAST = [name for name in LIF_BACKENDS if name != "torch"]


def _run(cfg, x, weights):
    x = x.clone().requires_grad_(True)
    spikes = lif_multistep(x, cfg)
    (grad,) = torch.autograd.grad((spikes * weights).sum(), x)
    return spikes, grad


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.reset}-{c.surrogate}-{c.decay}")
def test_backend_matches_reference(backend, cfg):
    torch.manual_seed(0)
    x = torch.randn(5, 4, 3, 6, 6) * 1.5 + 0.5
    weights = torch.randn_like(x)
    ref_spikes, ref_grad = _run(cfg, x, weights)
    with neuron_backend(backend):
        spikes, grad = _run(cfg, x, weights)
    assert torch.equal(spikes, ref_spikes)
    assert 0 < spikes.mean() < 1
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5)


def test_backend_selection_is_scoped_and_checked():
    assert active_backend() is LIF_BACKENDS.get("torch")
    with neuron_backend("auto", "cpu") as chosen:  # CPU: the C++ kernels (CI has g++, ninja)
        assert chosen == "cpp"
        assert active_backend() is LIF_BACKENDS.get("cpp")
    with pytest.raises(UnknownNameError, match="compile"):
        use_backend("complie")
    with pytest.raises(ConfigError, match="cannot run on meta"):
        use_backend("compile", "meta")
    with pytest.raises(ConfigError, match="CPU tensors only"):
        use_backend("cpp", "meta")
    assert active_backend() is LIF_BACKENDS.get("torch")


def test_auto_falls_back_to_torch_when_cpp_cannot_build(monkeypatch):
    from spikedistill.spiking import lif_cpp

    monkeypatch.setattr(lif_cpp, "_missing_tools", lambda: "no C++ compiler on PATH")
    with pytest.warns(UserWarning, match="no C\\+\\+ compiler on PATH; using 'torch'"):
        assert use_backend("auto", "cpu") == "torch"
    with pytest.raises(ConfigError, match="'cpp' cannot run on cpu: no C\\+\\+ compiler"):
        use_backend("cpp", "cpu")
    assert active_backend() is LIF_BACKENDS.get("torch")


def test_trainer_runs_on_the_configured_backend(tmp_path, monkeypatch):
    """``train.neuron_backend`` is selected for the run (and undone afterwards)."""
    from spikedistill.engine import trainer
    from spikedistill.engine.config import load_config

    calls = []

    def recording(name, device):
        calls.append((name, device))
        return neuron_backend(name, device)

    monkeypatch.setattr(trainer, "neuron_backend", recording)
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
    trainer.Trainer(cfg, tmp_path / "run").fit()
    assert calls == [("torch", torch.device("cpu"))]
    assert "T=2, torch neurons" in (tmp_path / "run" / "log.txt").read_text()
    assert active_backend() is LIF_BACKENDS.get("torch")


#: backends with a spike pass of their own (the others run the reference's)
OWN_SPIKE_PASS = [n for n in FAST if LIF_BACKENDS.get(n).norm_record is not norm_spike_statistics]


@pytest.mark.parametrize("record_chunk", [None, 100_000])
@pytest.mark.parametrize("backend", OWN_SPIKE_PASS)
def test_rate_backprop_spike_pass_is_the_same_on_every_backend(backend, record_chunk, monkeypatch):
    """The units' spike-pass kernels (BatchNorm + LIF + spike counts + eligibility) of a fast
    backend give the reference's spikes, hence logits, and its eligibilities (so gradients);
    also when the compiled scan takes a layer one image at a time (``record_chunk``)."""
    import copy

    from spikedistill.models import build_model
    from spikedistill.spiking import backends
    from spikedistill.spiking.ratebp import RateBackprop

    if record_chunk is not None:  # 5 steps of a 16 x 32 x 32 map per image: one per call
        monkeypatch.setattr(backends, "RECORD_CHUNK", record_chunk)

    torch.manual_seed(0)
    model = build_model("resnet8", 10, spiking=True, T=5, neuron="ratebp").train()
    other = copy.deepcopy(model)
    x = torch.randn(4, 3, 32, 32)
    ref_view = RateBackprop(model)
    ref_view(x).sum().backward()
    with neuron_backend(backend):
        view = RateBackprop(other)
        view(x).sum().backward()
    assert torch.equal(view.last_spike_logits, ref_view.last_spike_logits)
    for p, q in zip(other.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5)
