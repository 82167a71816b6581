"""The report's tables (issue 26): energy in an automatic unit, n/a where a figure does not
apply, the settings columns, the config keys that differ, runs differing only by seed as one
mean ± std row (three tiny trained runs)."""

import re

import numpy as np
import pytest

from spikedistill.cli import main
from spikedistill.diagnostics.energy import LayerOps, OpsReport
from spikedistill.diagnostics.table import (
    HEAD,
    RunDiagnostics,
    config_diff_rows,
    format_count,
    format_energy,
    summary_rows,
)


def test_energy_in_an_automatic_unit_with_three_figures():
    assert format_energy(1.234e-7) == "123 nJ"
    assert format_energy(1.0e-4) == "100 µJ"
    assert format_energy(1.35e-4) == "135 µJ"  # 35 % apart, not both "0.0001"
    assert format_energy(2.5e-12) == "2.50 pJ"
    assert format_energy(9.9996e-10) == "1.00 nJ"  # rounding carries into the next unit
    assert format_energy(0.0123) == "12.3 mJ"
    assert format_energy(4.2) == "4.20 J"
    assert format_energy(0.0) == "0 pJ"
    assert format_energy(None) == "n/a"
    assert format_count(1_234_567) == "1.23 M" and format_count(12) == "12.0"
    assert format_energy(1.15e-8, std=2.76e-10) == "11.5 ± 0.3 nJ"  # the mean's unit


def _config(spiking=True, seed=0, method="kd", teacher="convnet3"):
    return {
        "name": "x",
        "model": {"name": "convnet3", "spiking": spiking, "T": 4, "neuron": "tdbn"},
        "train": {"seed": seed, "backprop": "bptt"},
        "teacher": {"name": teacher},
        "distill": {"method": method},
    }


def _ops(kind="SOP", ops=1e6):
    return OpsReport({"enc": LayerOps("MAC", 1e5, 1e5), "fc": LayerOps(kind, 2e6, ops)})


def _cells(row):
    return dict(zip(HEAD, row, strict=True))


def test_ann_and_teacherless_runs_show_na():
    ann = RunDiagnostics("ann", {"best_top1": 90.0}, _config(False, method="none", teacher=None))
    ann.ops = _ops("MAC", 2e6)
    cells = _cells(summary_rows([ann])[1])
    assert cells["SOPs / sample"] == "n/a" and cells["firing rate"] == "n/a"
    assert cells["T"] == cells["neuron"] == cells["backprop"] == "n/a"
    assert cells["STM (paper, ln)"] == "n/a" and cells["teacher energy / sample"] == "n/a"
    assert cells["MACs / sample"] == "2.10 M" and cells["energy / sample"] == "9.66 µJ"
    assert cells["method"] == "none" and cells["seed"] == "0"
    snn = RunDiagnostics("snn", {}, _config(), rates={"sn1": [0.1, 0.3]}, ops=_ops(), stm=-1.0)
    cells = _cells(summary_rows([snn])[1])
    assert (cells["T"], cells["backprop"], cells["neuron"]) == ("4", "bptt", "tdbn")
    assert cells["firing rate"] == "0.2000" and cells["SOPs / sample"] == "1.00 M"


def test_what_differs_lists_dotted_keys_per_run():
    a = RunDiagnostics("a", {}, _config(method="kd"))
    b = RunDiagnostics("b", {}, _config(method="kd+sastc", seed=3))
    b.config["distill"]["options"] = {"kd": {"tau": 4}}
    rows = config_diff_rows([a, b])
    assert rows[0] == ["config key", "a", "b"]
    assert rows[1:] == [
        ["distill.method", "kd", "kd+sastc"],
        ["distill.options.kd.tau", "-", "4"],
        ["train.seed", "0", "3"],
    ]
    assert config_diff_rows([a]) == [["config key", "a"]]
    # an ANN's T, neuron and backprop mean nothing: n/a, not a difference of its own
    ann = RunDiagnostics("ann", {}, _config(spiking=False, method="kd"))
    snn = RunDiagnostics("snn", {}, _config(method="kd"))
    snn.config["model"]["T"] = 2
    assert config_diff_rows([ann, snn])[1:] == [
        ["model.T", "n/a", "2"],
        ["model.neuron", "n/a", "tdbn"],
        ["model.spiking", "false", "true"],
        ["train.backprop", "n/a", "bptt"],
    ]


def test_runs_differing_by_seed_share_a_mean_std_row():
    runs = [
        RunDiagnostics(f"s{i}", {"best_top1": acc}, _config(seed=i), ops=_ops(ops=o))
        for i, (acc, o) in enumerate([(80.0, 1e6), (82.0, 2e6), (84.0, 3e6)])
    ]
    other = RunDiagnostics("kd2", {"best_top1": 70.0}, _config(method="none"), ops=_ops())
    rows = summary_rows([*runs, other])
    assert len(rows) == 3
    cells = _cells(rows[1])
    assert cells["run"] == "s0, s1, s2 (mean ± std of 3 seeds)" and cells["seed"] == "0, 1, 2"
    assert cells["best top-1 (%)"] == "82.00 ± 2.00"
    assert cells["SOPs / sample"] == "2.00 ± 1.00 M"
    assert _cells(rows[2])["run"] == "kd2"


TINY = [
    "data.name=digits",
    "data.train_subset=60",
    "data.batch_size=60",
    "data.eval_batch_size=100",
    "model.name=convnet3",
    "model.spiking=true",
    "model.T=2",
    "model.options={width: 4}",
    "train.epochs=1",
]


@pytest.fixture(scope="module")
def seed_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    (root / "tiny.yaml").write_text("name: seeds\n")
    for seed in range(3):
        argv = ["train", str(root / "tiny.yaml"), *TINY, f"train.seed={seed}"]
        assert main([*argv, "--out", str(root / f"seed{seed}")]) == 0
    runs = [str(root / f"seed{s}") for s in range(3)]
    assert main(["report", *runs, "--batches", "1", "--out", str(root / "out")]) == 0
    return root / "out"


def test_three_tiny_runs_differing_by_seed_report_one_row(seed_report):
    md = (seed_report / "report.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| seed")]
    assert len(rows) == 1 and "(mean ± std of 3 seeds)" in rows[0]
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    named = dict(zip(HEAD, cells, strict=True))
    assert named["seed"] == "0, 1, 2" and named["T"] == "2" and named["method"] == "none"
    assert re.fullmatch(r"[\d.]+ ± [\d.]+ [pnµm]?J", named["energy / sample"])
    assert "| train.seed | 0 | 1 | 2 |" in md  # what differs: the seed alone
    assert (seed_report / "energy.png").stat().st_size > 1000


def test_heatmaps_of_one_kind_share_a_colour_scale():
    from spikedistill.diagnostics.page import shared_scales

    a = RunDiagnostics("a", {}, rates={"sn1": [0.1, 0.2], "sn2": [0.05, 0.0]})
    b = RunDiagnostics("b", {}, rates={"sn1": [0.4, 0.3]})
    b.maps = (np.zeros((1, 1, 4, 4)), np.full((1, 4, 4), 2.0), np.full((1, 4, 4), 7.0))
    assert shared_scales([a, b]) == (0.4, (2.0, 7.0))
    assert shared_scales([RunDiagnostics("ann", {})]) == (1.0, (None, None))


def test_a_report_over_an_older_one_removes_the_older_figures_only(tmp_path):
    from spikedistill.diagnostics.page import linked_figures, write_report

    history = {"history": [{"epoch": 1, "test_top1": 50.0}], "best_top1": 50.0}
    old = RunDiagnostics("old run", history, rates={"sn1": [0.1, 0.2]})
    write_report([old], tmp_path)
    assert (tmp_path / "firing_old_run.png").is_file()
    (tmp_path / "mine.png").write_bytes(b"not the report's")
    write_report([RunDiagnostics("new", history, rates={"sn1": [0.3, 0.1]})], tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["accuracy.png", "firing_new.png", "mine.png", "report.html", "report.md"]
    assert linked_figures(tmp_path / "report.md") == {"accuracy.png", "firing_new.png"}


def test_epoch_axes_tick_whole_epochs():
    """Three epochs used to get ticks at 1.5 and 2.5."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spikedistill.viz.curves import epoch_axis

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [10.0, 20.0, 30.0])
    fig.canvas.draw()
    assert any(t % 1 for t in ax.get_xticks())  # matplotlib's default: halves
    epoch_axis(ax)
    fig.canvas.draw()
    ticks = ax.get_xticks()
    assert all(t % 1 == 0 for t in ticks) and ax.get_xlabel() == "epoch"
    plt.close(fig)
