"""Firing rates, operation counts and energy against hand-computed values; the report page in a
real headless browser."""

import html
import json
import math
import re
import shutil
import subprocess

import pytest
import torch
from torch import nn

from spikedistill.cli import main
from spikedistill.diagnostics import count_ops, energy_constants, firing_rates
from spikedistill.errors import ConfigError
from spikedistill.spiking import LIF, FoldedNeuron, repeat_folded

T = 3


class Tiny(nn.Module):
    """conv 1->2 (3x3, pad 1) -> LIF -> conv 2->3 (1x1) -> LIF -> linear 48->5 on 4x4 inputs.

    conv1 has all weights 1 and the input is all ones: every output is 4, 6 or 9 >= threshold 1,
    so layer 1 fires everywhere at every step. conv2 passes channel 0 as the sum of both inputs
    (2 >= 1: fires) and zeroes channels 1, 2 (never fire): layer 2 fires at rate 1/3."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.sn1 = FoldedNeuron(LIF("tdbn"), T)
        self.conv2 = nn.Conv2d(2, 3, 1, bias=False)
        self.sn2 = FoldedNeuron(LIF("tdbn"), T)
        self.fc = nn.Linear(48, 5)
        with torch.no_grad():
            self.conv1.weight.fill_(1.0)
            self.conv2.weight.zero_()
            self.conv2.weight[0].fill_(1.0)

    def forward(self, x):  # x [B, 1, 4, 4], the same at every step
        z = self.sn1(self.conv1(repeat_folded(x, T)))
        z = self.sn2(self.conv2(z))
        return self.fc(z.flatten(1))


def test_firing_rates_and_sops_by_hand():
    model = Tiny()
    batches = [(torch.ones(2, 1, 4, 4), torch.zeros(2)), (torch.ones(3, 1, 4, 4), torch.zeros(3))]
    rates = firing_rates(model, batches)
    assert rates["sn1"].tolist() == [1.0] * T
    torch.testing.assert_close(rates["sn2"], torch.full((T,), 1 / 3, dtype=torch.float64))
    report = count_ops(model, batches)
    # conv1 runs on all T steps of real-valued input (no neuron before it): MACs
    assert report.layers["conv1"].kind == "MAC"
    assert report.layers["conv1"].ops == T * 2 * 16 * 9
    # conv2: dense 3*16*2 per step, input rate 1; fc: 5*48 per step, input rate 1/3
    assert report.layers["conv2"].kind == "SOP" and report.layers["conv2"].ops == T * 96
    assert report.layers["fc"].ops == pytest.approx(T * 240 / 3)
    assert report.sops == pytest.approx(T * (96 + 80))
    assert report.energy_pj == pytest.approx(0.9 * T * 176 + 4.6 * T * 288)
    ann = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32, 5))
    ann_report = count_ops(ann, batches)
    assert ann_report.sops == 0 and ann_report.macs == 2 * 16 * 9 + 5 * 32
    assert energy_constants("int8") == (0.03, 0.23)
    assert energy_constants("fp32", e_mac=3.0) == (0.9, 3.0)
    with pytest.raises(ConfigError, match="fp32"):
        energy_constants("fp8")


class SnnTorchLoop(nn.Module):
    """snnTorch's way, T = 3 calls of ``enc -> Leaky -> fc``. ``enc`` gives 0.6 on the input
    0.5; the Leaky (beta 0.5, threshold 1, reset to zero) charges 0.6, 0.9, 1.05: it fires at
    the third step only."""

    spiking, T = True, T

    def __init__(self):
        super().__init__()
        snn = pytest.importorskip("snntorch")
        self.enc, self.fc = nn.Linear(1, 4, bias=False), nn.Linear(4, 2, bias=False)
        self.lif = snn.Leaky(beta=0.5, threshold=1.0, init_hidden=True, reset_mechanism="zero")
        nn.init.constant_(self.enc.weight, 1.2)

    def forward(self, x, per_step=False):
        from snntorch import utils

        utils.reset(self)
        steps = torch.stack([self.fc(self.lif(self.enc(x))) for _ in range(self.T)])
        return steps if per_step else steps.mean(0)


def spikingjelly_net():
    """``enc -> LIFNode -> fc`` in multi-step mode: ``enc`` gives 1.6 on the input 0.5; the node
    (tau 2, threshold 1, hard reset to 0) charges 0.8, 1.2 (fires), 0.8: rates 0, 1, 0."""
    pytest.importorskip("spikingjelly.activation_based")
    from spikingjelly.activation_based import layer, neuron

    from spikedistill.interop.spikingjelly import as_student

    enc, fc = layer.Linear(1, 4, bias=False), layer.Linear(4, 2, bias=False)
    nn.init.constant_(enc.weight, 3.2)
    return as_student(nn.Sequential(enc, neuron.LIFNode(tau=2.0), fc), T=T, static_ndim=2)


@pytest.mark.parametrize(
    "build, rates", [(SnnTorchLoop, [0.0, 0.0, 1.0]), (spikingjelly_net, [0.0, 1.0, 0.0])],
    ids=["snntorch", "spikingjelly"],
)  # fmt: skip
def test_firing_rates_and_sops_of_other_libraries_neurons(build, rates):
    model = build()
    batches = [(torch.full((2, 1), 0.5), torch.zeros(2))]
    ((layer, found),) = firing_rates(model, batches).items()
    assert found.tolist() == rates, layer
    report = count_ops(model, batches)
    enc, fc = (name for name in report.layers)
    # the encoding layer sees the real input at every step (MACs), fc the spikes (SOPs)
    assert report.layers[enc].kind == "MAC" and report.layers[enc].ops == T * 4
    assert report.layers[fc].kind == "SOP" and report.layers[fc].dense == T * 8
    assert report.layers[fc].ops == pytest.approx(8 * sum(rates))


COMMON = [
    "data.name=digits",
    "data.train_subset=160",
    "data.batch_size=32",
    "model.name=convnet3",
    "model.spiking=true",
    "model.T=2",
    "model.options={width: 8}",
    "teacher.name=convnet3",
    "teacher.options={width: 8}",
    "train.epochs=2",
    "train.stm_every=1",
]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    (root / "tiny.yaml").write_text("name: diagnostics\n")
    for name, method in (("sastc", "kd+sastc"), ("samd", "samd+nld")):
        argv = ["train", str(root / "tiny.yaml"), *COMMON, f"distill.method={method}"]
        argv += ["--out", str(root / name)]
        assert main(argv) == 0
    assert (
        main(["report", str(root / "sastc"), str(root / "samd"), "--out", str(root / "out")]) == 0
    )
    return root


def test_report_files_and_table(report_dir):
    out = report_dir / "out"
    md = (out / "report.md").read_text()
    for name in ("accuracy.png", "energy.png", "loss_terms.png", "firing_sastc.png",
                 "firing_samd.png", "sastc_attention_sastc.png", "samd_maps_samd.png"):  # fmt: skip
        assert (out / name).stat().st_size > 1000 and name in md
    rows = [
        line for line in md.splitlines() if line.startswith("| sastc") or line.startswith("| samd")
    ]
    assert len(rows) == 2 and all("n/a" not in r for r in rows)  # every column measured
    history = json.loads((report_dir / "samd" / "metrics.json").read_text())["history"]
    assert all(math.isfinite(r["stm"]) for r in history)  # the STM per epoch (a log: any sign)


def _table(dom: str, table_id: str) -> list[list[str]]:
    """The cells of the table ``table_id`` of a dumped DOM, row by row."""
    table = re.search(rf'<table id="{table_id}">(.*?)</table>', dom, re.S).group(1)
    return [
        [html.unescape(c) for c in re.findall(r"<t[hd]>(.*?)</t[hd]>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)
    ]


def test_report_page_in_headless_chromium(report_dir):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (Debian package: chromium)")
    page = report_dir / "out" / "report.html"
    shot = report_dir / "screenshot.png"
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run(
        [*flags, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert dom.count("<table") == 2 and dom.count("<img") == 7
    assert "data:image/png;base64," in dom
    rows = _table(dom, "summary")
    head, body = rows[0], rows[1:]
    assert len(body) == 2
    for column in ("method", "T", "backprop", "neuron", "seed", "energy / sample"):
        assert column in head
    cells = [dict(zip(head, row, strict=True)) for row in body]
    assert {c["method"] for c in cells} == {"kd+sastc", "samd+nld"}
    assert all((c["T"], c["backprop"], c["neuron"], c["seed"]) == ("2", "bptt", "tdbn", "0")
               for c in cells)  # fmt: skip
    for c in cells:  # energy in an automatic unit, never rounded to zero
        for key in ("energy / sample", "teacher energy / sample"):
            assert re.fullmatch(r"[1-9][\d.]* [pnµm]?J", c[key]), c[key]
    diff = _table(dom, "config-diff")
    assert ["distill.method", "kd+sastc", "samd+nld"] in diff
    subprocess.run(  # what a reader sees, for a look by hand (kept beside the report)
        [*flags, f"--screenshot={shot}", "--window-size=1280,3000", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


SJ_NET = """
from torch import nn
from spikingjelly.activation_based import layer, neuron
from spikedistill.interop.spikingjelly import as_student

def net(num_classes, in_channels, T, width=4):
    return as_student(nn.Sequential(
        layer.Conv2d(in_channels, width, 3, padding=1), layer.BatchNorm2d(width),
        neuron.LIFNode(), layer.AdaptiveAvgPool2d(1), layer.Flatten(),
        layer.Linear(width, num_classes)), T=T)
"""


def test_a_spikingjelly_student_is_reported_with_its_own_neurons(tmp_path, monkeypatch):
    """Its config names the default preset (tdbn), which it never used."""
    pytest.importorskip("spikingjelly.activation_based")
    from spikedistill.diagnostics.report import analyze_run
    from spikedistill.diagnostics.table import HEAD, summary_rows

    (tmp_path / "sj_net.py").write_text(SJ_NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "c.yaml").write_text("name: sj\n")
    argv = ["train", str(tmp_path / "c.yaml"), "data.name=digits", "data.train_subset=64"]
    argv += ["data.batch_size=32"]
    argv += ["model.name=sj_net:net", "model.spiking=true", "model.T=2", "train.epochs=1"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    run = analyze_run(tmp_path / "run", batches=1)
    cells = dict(zip(HEAD, summary_rows([run])[1], strict=True))
    assert cells["neuron"] == "LIFNode" and run.rates and cells["firing rate"] != "n/a"


def test_the_teacher_energy_is_the_teacher_runs_that_training_used(tmp_path):
    """A teacher run given as ``teacher.checkpoint`` brings its ``model.options`` (width 4
    here); the report measured a default-width teacher instead, 3.5x its energy."""
    from spikedistill.diagnostics.report import analyze_run

    (tmp_path / "tiny.yaml").write_text("name: teacher-energy\n")
    data = [*COMMON[:3], "train.epochs=1", "model.name=convnet3", "model.options.width=4"]
    teacher = ["train", str(tmp_path / "tiny.yaml"), *data, "model.spiking=false"]
    assert main([*teacher, "--out", str(tmp_path / "teacher")]) == 0
    student = ["train", str(tmp_path / "tiny.yaml"), *data, "model.spiking=true", "model.T=2"]
    student += ["teacher.name=convnet3", f"teacher.checkpoint={tmp_path / 'teacher'}"]
    assert main([*student, "distill.method=kd", "--out", str(tmp_path / "kd")]) == 0
    own = analyze_run(tmp_path / "teacher", batches=1).ops
    as_teacher = analyze_run(tmp_path / "kd", batches=1).teacher_ops
    assert as_teacher.macs == own.macs and as_teacher.energy_pj == pytest.approx(own.energy_pj)
