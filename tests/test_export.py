"""``spikedistill export``: NIR graphs read back by snnTorch's importer and ONNX models run by
onnxruntime give what the model computes; the formats' limits and the command's mistakes are
one-line errors."""

import dataclasses
import importlib.util
import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from bad_input import expect_one_line_error
from spikedistill import build_model
from spikedistill.cli import main
from spikedistill.data.info import DatasetInfo
from spikedistill.engine.config import load_config
from spikedistill.engine.setup import build_student
from spikedistill.errors import ConfigError
from spikedistill.interop.export import EXPORTERS, export_model
from spikedistill.interop.nir_export import to_nir
from spikedistill.interop.nir_neuron import DEFAULT_DT, neuron_node
from spikedistill.interop.onnx_export import export_program
from spikedistill.spiking import FoldedNeuron, NeuronConfig, set_backend

T = 3
TINY_RESNET = dict(stem_channels=4, widths=[4, 8, 8], depths=[1, 1, 1])


def tiny_resnet(**kw):
    """resnet8 at widths 4/8/8 with a hidden head layer: stem, an identity and two projection
    shortcuts, global average pooling, fc1 -> LIF -> fc."""
    options = dict(TINY_RESNET, head_hidden=8, in_channels=3, **kw)
    return build_model("resnet8", 10, spiking=True, T=T, **options)


def tiny_vgg_frames(**kw):
    """A VGG of average pools and a flattened head on time-first event frames (as vggsnn)."""
    groups = [[4, 4], [8]]
    options = dict(groups=groups, pool="avg", pool_last=True, flatten_size=8, in_channels=2)
    return build_model("vgg8", 10, spiking=True, T=T, **options, **kw)


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` in eval mode with BatchNorm statistics and affines drawn away from the
    identity (so folding them matters) and the hidden head layer scaled up to fire."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(0.3 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=gen))
                m.weight.copy_(0.5 + 1.5 * torch.rand(c, generator=gen))
                m.bias.copy_(0.3 + 0.5 * torch.randn(c, generator=gen))
        fc1 = getattr(model.head, "fc1", None)
        if fc1 is not None:
            fc1.weight.mul_(4.0)
    set_backend(model, "torch")
    return model.eval()


# -- NIR ----------------------------------------------------------------------------------------
def spike_recorder(model: nn.Module, kinds: tuple[type, ...], store: dict) -> None:
    """Keep every output of ``model``'s modules of ``kinds`` under the module's name with dots
    as underscores (nirtorch's node names)."""
    for name, m in model.named_modules():
        if isinstance(m, kinds):
            key = name.replace(".", "_")
            m.register_forward_hook(lambda m, i, o, key=key: store.setdefault(key, []).append(o))


def run_snntorch(net: nn.Module, x: torch.Tensor, snn) -> torch.Tensor:
    """Per-step outputs ``[T, B, K]`` of the imported network, one sample at a time (snnTorch
    1.0 imports NIR's ``Flatten(start_dim=0)`` as torch's, which would flatten the batch too),
    its neurons reset before each sample. ``x``: ``[B, C, H, W]`` (the same image every step)
    or frames ``[T, B, C, H, W]``."""
    outs = []
    with torch.no_grad():
        for b in range(x.shape[-4]):
            for m in net.modules():
                if isinstance(m, snn.Leaky):
                    m.reset_mem()
            for t in range(T):
                sample = x[b : b + 1] if x.dim() == 4 else x[t, b : b + 1]
                out, _ = net(sample)
                outs.append(out.reshape(-1))
    return torch.stack(outs).view(-1, T, outs[0].numel()).transpose(0, 1)


@pytest.mark.parametrize(
    "make, x_shape",
    [
        (tiny_resnet, (4, 3, 8, 8)),
        (
            lambda: tiny_vgg_frames(neuron_kwargs=dict(decay=0.2, decay_input=True, threshold=0.5)),
            (T, 4, 2, 8, 8),
        ),
    ],
    ids=["resnet-direct", "vgg-frames-decay-input"],
)
def test_nir_round_trip_through_snntorch(make, x_shape, tmp_path, capsys):
    """The file, imported by snnTorch, fires the same spikes in every layer at every step and
    gives the same per-step fc outputs as the model."""
    nir = pytest.importorskip("nir")
    snn = pytest.importorskip("snntorch")
    from snntorch.import_nir import import_from_nir

    model = randomised(make())
    x = 3.0 * torch.rand(x_shape, generator=torch.Generator().manual_seed(1))
    export_model(model, "nir", tmp_path / "m.nir", sample_shape=x_shape[-3:])
    net = import_from_nir(nir.read(tmp_path / "m.nir"))

    ours, theirs = {}, {}
    spike_recorder(model, (FoldedNeuron,), ours)
    spike_recorder(net, (snn.Leaky,), theirs)
    with torch.no_grad():
        expected = model(x, per_step=True)  # [T, B, K]
    got = run_snntorch(net, x, snn)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-5
    B = expected.shape[1]
    assert set(ours) == set(theirs) and len(ours) >= 3
    for name, (spikes,) in ours.items():
        counts = spikes.view(T, B, *spikes.shape[1:]).sum(0)  # spikes per neuron over T
        imported = torch.stack(theirs[name]).view(B, T, *spikes.shape[1:]).sum(1)
        assert torch.equal(counts, imported), name
        assert 0 < spikes.mean() < 1, f"{name} fires never or always: a weak check"


def test_nir_neuron_parameters():
    """tau = dt / (1 - decay), r = k / (1 - decay); IF (decay 1): r = k / dt; hard reset."""
    nir = pytest.importorskip("nir")
    dt = 1e-3
    lif = neuron_node(NeuronConfig(decay=0.75, threshold=0.5), (2, 3), dt, "x")
    assert isinstance(lif, nir.LIF) and lif.tau.shape == (2, 3)
    np.testing.assert_allclose(lif.tau, dt / 0.25)
    np.testing.assert_allclose(lif.r, 1 / 0.25)
    np.testing.assert_allclose(lif.v_threshold, 0.5)
    assert not lif.v_leak.any() and not lif.v_reset.any()
    # forward Euler: v_t = (1 - dt/tau) v + (r dt / tau) I  ==  decay v + k I
    np.testing.assert_allclose(1 - dt / lif.tau, 0.75)
    np.testing.assert_allclose(lif.r * dt / lif.tau, 1.0)
    leaky_in = neuron_node(NeuronConfig(decay=0.75, decay_input=True), (4,), dt, "x")
    np.testing.assert_allclose(leaky_in.r * dt / leaky_in.tau, 0.25)
    integrate = neuron_node(NeuronConfig(decay=1.0), (4,), dt, "x")
    assert isinstance(integrate, nir.IF)
    np.testing.assert_allclose(integrate.r * dt, 1.0)


def test_nir_graph_shape_and_metadata():
    pytest.importorskip("nir")
    model = randomised(tiny_resnet())
    graph = to_nir(model, (3, 8, 8))
    assert graph.metadata["dt"] == DEFAULT_DT and graph.metadata["T"] == T
    # BatchNorms are folded: no node of their own; shortcuts sum into act2 by two edges
    assert not any("bn" in name for name in graph.nodes)
    into = [src for src, dst in graph.edges if dst == "layer2.0.act2"]
    assert sorted(into) == ["layer2.0.conv2", "layer2.0.shortcut.0"]
    assert sorted(src for src, dst in graph.edges if dst == "layer1.0.act2") == [
        "layer1.0.conv2",
        "stem_act",  # the identity shortcut
    ]
    assert graph.nodes["head.pool"].kernel_size.tolist() == [2, 2]
    assert [src for src, dst in graph.edges if dst == "output"] == ["head.fc"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: tiny_resnet(neuron="ratebp"), "stem_act to NIR: its neurons reset by subtraction"),
        (
            lambda: build_model("convnet3", spiking=True, T=2, width=4, in_channels=3),
            "layer1.0 (MaxPool2d)",
        ),
        (lambda: build_model("wrn_16_1", spiking=True, T=2), "layer1.0 (PreActBlock)"),
        (lambda: build_model("resnet8", **TINY_RESNET), "needs a spiking model"),
        (lambda: nn.Sequential(nn.Linear(2, 2)), "zoo models only"),
    ],
    ids=["soft-reset", "max-pool", "pre-activation", "ann", "not-zoo"],
)
def test_nir_refuses_what_it_cannot_express(make, message):
    pytest.importorskip("nir")
    with pytest.raises(ConfigError) as err:
        to_nir(make().eval(), (3, 8, 8))
    assert message in str(err.value)


# -- ONNX ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, sample",
    [
        (tiny_resnet, (3, 8, 8)),
        (lambda: build_model("convnet3", in_channels=3, width=4), (3, 8, 8)),  # an ANN
        # time-first event frames (the batch is dim 1), soft reset (NIR cannot, ONNX can)
        (lambda: tiny_vgg_frames(neuron="ratebp"), (T, 2, 8, 8)),
    ],
    ids=["snn", "ann", "snn-frames-soft-reset"],
)
def test_onnx_matches_eager_at_two_batch_sizes(make, sample, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = randomised(make())
    path = tmp_path / "m.onnx"
    summary = export_model(model, "onnx", path, sample_shape=sample)
    assert "batch" in summary
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(2)
    for batch in (1, 5):
        shape = list(sample)
        shape.insert(1 if len(sample) == 4 else 0, batch)
        x = 3.0 * torch.rand(shape, generator=gen)
        (got,) = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            expected = model(x).numpy()
        assert got.shape == expected.shape == (batch, 10)
        assert np.abs(got - expected).max() <= 1e-5


def test_onnx_refuses_a_foreign_neuron():
    model = tiny_resnet().eval()
    model.layer1[0].act1 = FoldedNeuron(nn.ReLU(), T)
    with pytest.raises(ConfigError, match=r"layer1\.0\.act1 to ONNX: its neuron is a ReLU"):
        export_program(model, (3, 8, 8))


def test_export_model_checks_before_writing(tmp_path):
    model = tiny_resnet().eval()
    with pytest.raises(ConfigError, match="onnx export takes no option dt"):
        export_model(model, "onnx", tmp_path / "m.onnx", (3, 8, 8), dt=1e-3)
    with pytest.raises(ConfigError, match="no data_info"):
        export_model(model, "nir", tmp_path / "m.nir")
    with pytest.raises(ConfigError, match="C,H,W or T,C,H,W"):
        export_model(model, "nir", tmp_path / "m.nir", (8, 8))
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="file is not a folder"):
        export_model(model, "onnx", tmp_path / "file" / "sub" / "m.onnx", (3, 8, 8))
    assert [p.name for p in tmp_path.iterdir()] == ["file"]
    assert EXPORTERS.names() == ["nir", "onnx"]


# -- the command --------------------------------------------------------------------------------
def write_run(folder, name: str, options: dict) -> str:
    """A run directory holding a best.pt of an untrained student, as training writes it."""
    options_text = "{" + ", ".join(f"{k}: {v}" for k, v in options.items()) + "}"
    model_keys = [f"model.name={name}", "model.spiking=true", "model.T=2"]
    cfg = load_config(None, [*model_keys, f"model.options={options_text}"])
    info = DatasetInfo(num_classes=10, in_channels=1, image_size=(8, 8), mean=(0.5,), std=(0.25,))
    model = build_student(cfg, info.num_classes, info.in_channels)
    folder.mkdir(parents=True)
    ckpt = {"config": cfg.to_dict(), "model": model.state_dict()}
    torch.save({**ckpt, "data_info": dataclasses.asdict(info)}, folder / "best.pt")
    return str(folder)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {
        "resnet": write_run(root / "resnet", "resnet8", TINY_RESNET),
        "convnet": write_run(root / "convnet", "convnet3", {"width": 4}),
    }


def test_cli_exports_a_run(runs, tmp_path, capsys):
    nir = pytest.importorskip("nir")
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "sub" / "model.nir"  # its folder is made
    assert main(["export", runs["resnet"], "--format", "nir", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    graph = nir.read(out)
    assert graph.nodes["input"].input_type["input"].tolist() == [1, 8, 8]
    np.testing.assert_allclose(graph.metadata["input_std"], [0.25])
    argv = ["export", runs["resnet"], "--format", "nir", "--out", str(out), "--dt", "0.001"]
    expect_one_line_error(argv, "exists; pass --force", capsys, watch=[tmp_path])
    assert main([*argv, "--force"]) == 0
    assert nir.read(out).metadata["dt"] == 0.001
    onnx_out = tmp_path / "model.onnx"
    assert main(["export", runs["convnet"], "--format", "onnx", "--out", str(onnx_out)]) == 0
    assert "input [batch, 1, 8, 8]" in capsys.readouterr().out
    meta = {p.key: p.value for p in onnx.load(str(onnx_out)).metadata_props}
    assert meta["T"] == "2" and json.loads(meta["input_normalisation"])["std"] == [0.25]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["model.nir", "model.onnx", "sub"]


BAD = [
    ("unknown-format", ["--format", "nri"], "unknown export format 'nri'. Did you mean 'nir'?"),
    ("dt-for-onnx", ["--format", "onnx", "--dt", "0.1"], "onnx export takes no option dt"),
    ("bad-dt", ["--format", "nir", "--dt", "-1"], "--dt must be a finite number > 0"),
    ("bad-shape", ["--format", "nir", "--input-shape", "3,x,8"], "--input-shape must be C,H,W"),
    ("wrong-shape-nir", ["--format", "nir", "--input-shape", "3,8,8"], "stem.0 (Conv2d) cannot"),
    ("wrong-shape-onnx", ["--format", "onnx", "--input-shape", "3,8,8"], "cannot run on inputs"),
    ("unsupported", ["--format", "nir", "RUN=convnet"], "layer1.0 (MaxPool2d)"),
    ("no-run", ["--format", "nir", "RUN=missing"], "does not exist"),
    ("out-is-folder", ["--format", "nir", "OUT=."], "is a folder"),
    ("out-under-a-file", ["--format", "onnx", "OUT=existing/m.onnx"], "existing' is not a folder"),
]


#: rows whose check runs inside the NIR conversion (without ``nir`` the error says to install it)
WITH_NIR = {"wrong-shape-nir", "unsupported"}
NO_NIR = pytest.mark.skipif(importlib.util.find_spec("nir") is None, reason="nir is not installed")


BAD_PARAMS = [pytest.param(*r[1:], id=r[0], marks=[NO_NIR] * (r[0] in WITH_NIR)) for r in BAD]


@pytest.mark.parametrize("flags, message", BAD_PARAMS)
def test_cli_bad_inputs(flags, message, runs, tmp_path, capsys):
    run = runs["resnet"]
    out = str(tmp_path / "m.out")
    argv = []
    for flag in flags:
        if flag.startswith("RUN="):
            run = runs.get(flag[4:], str(tmp_path / flag[4:]))
        elif flag.startswith("OUT="):
            out = str(tmp_path / flag[4:])
        else:
            argv.append(flag)
    (tmp_path / "existing").write_text("x")
    expect_one_line_error(["export", run, *argv, "--out", out], message, capsys, watch=[tmp_path])


def test_onnx_export_refuses_a_graph_it_could_only_fix_to_one_batch():
    """snnTorch's init_hidden neurons size their state by the first input: torch.onnx falls
    back to a static graph of the example batch (2), which wrote a model for batch 2 only."""
    snn = pytest.importorskip("snntorch")
    pytest.importorskip("onnx")

    class LoopNet(nn.Module):
        spiking, T = True, 2

        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4, 10)
            self.lif = snn.Leaky(beta=0.5, init_hidden=True)

        def forward(self, x, per_step=False):
            from snntorch import utils

            utils.reset(self)
            steps = [self.fc(self.lif(self.conv(x)).mean(dim=(2, 3))) for _ in range(self.T)]
            return torch.stack(steps) if per_step else torch.stack(steps).mean(0)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ConfigError, match="LoopNet fixed the batch at 2"):
            export_program(LoopNet().eval(), (1, 8, 8))
    assert [str(w.message) for w in caught] == []  # the one line alone, no torch notes
