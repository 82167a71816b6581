import csv
import json

import pytest
import torch

from spikedistill.bench.memory import fresh_process_peak
from spikedistill.bench.suite import add_ratios
from spikedistill.bench.variants import BenchSpec
from spikedistill.cli import main

SMALL = ["--model", "convnet3", "--size", "12", "--in-channels", "1", "--batch", "2"]


def test_bench_writes_table_csv_and_plot_with_ratios(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "bench"
    argv = ["bench", *SMALL, "--options", json.dumps({"width": 4}), "--T", "1", "2"]
    argv += ["--reps", "1", "--no-memory", "--out", str(out)]
    assert main(argv) == 0
    with open(out.with_suffix(".csv")) as fh:
        rows = list(csv.DictReader(fh))
    variants = {r["variant"] for r in rows}
    assert {"limit", "bptt", "rate"} <= variants
    assert {r["T"] for r in rows} == {"1", "2"}
    limit = [r for r in rows if r["variant"] == "limit"]
    assert all(float(r["train_vs_limit"]) == 1.0 for r in limit)
    text = out.with_suffix(".md").read_text()
    assert "spikedistill bench --model convnet3" in text and "| 2 | spikedistill BPTT |" in text
    assert "memory: not measured (--no-memory)" in text
    assert out.with_suffix(".png").stat().st_size > 0


def test_bench_rejects_unknown_variants_and_bad_sizes(capsys):
    assert main(["bench", *SMALL, "--variants", "bptt", "fastest", "--no-memory"]) == 2
    assert "fastest" in capsys.readouterr().err
    assert main(["bench", *SMALL, "--T", "0", "--no-memory"]) == 2
    assert main(["bench", *SMALL, "--T", "2", "1", "2", "--no-memory"]) == 2
    assert "--T: 2 given more than once" in capsys.readouterr().err


def test_bench_help_names_every_variant_and_backend(capsys):
    from spikedistill.bench.variants import VARIANTS
    from spikedistill.spiking import LIF_BACKENDS

    assert main(["bench", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())

    def listed(after: str) -> set[str]:
        return set(text.split(after, 1)[1].split(" --", 1)[0].split(", "))

    assert listed("what to time: ") == set(VARIANTS.names())
    assert listed("neurons' backend: ") == {"auto", *LIF_BACKENDS.names()}


def test_memory_point_in_a_fresh_process_grows_with_the_batch():
    spec = BenchSpec("convnet3", T=2, batch=8, size=28, in_channels=1, options={"width": 8})
    small = fresh_process_peak(spec, "limit")
    large = fresh_process_peak(spec.replace(batch=256), "limit")
    assert 0 < small < large


def test_ratios_are_taken_at_the_same_T():
    rows = [
        dict(T=1, variant="limit", train_s=1.0, peak_mb=10.0),
        dict(T=1, variant="bptt", train_s=2.0, peak_mb=5.0),
        dict(T=2, variant="limit", train_s=4.0, peak_mb=20.0),
        dict(T=2, variant="bptt", train_s=2.0, peak_mb=None),
    ]
    add_ratios(rows)
    assert rows[1]["train_vs_limit"] == 2.0 and rows[1]["mem_vs_limit"] == 0.5
    assert rows[3]["train_vs_limit"] == 0.5 and rows[3]["mem_vs_limit"] is None
    assert rows[1]["train_vs_sj"] is None


def test_the_table_gives_each_time_its_spread_and_warns_when_it_is_large():
    from spikedistill.bench.suite import markdown
    from spikedistill.bench.timing import spread

    assert spread([5.0, 1.0, 4.0, 2.0, 3.0]) == 1.0  # quartiles 1.5 and 4.5, median 3
    assert spread([1.0, 2.0, 3.0]) is None  # too few to say
    spec = BenchSpec("convnet3", T=1, batch=2, size=8, in_channels=1)
    rows = [
        dict(T=1, variant="limit", train_s=1.0, train_spread=0.05, infer_s=None, peak_mb=None),
        dict(T=1, variant="bptt", train_s=2.0, train_spread=0.4, infer_s=None, peak_mb=None),
    ]
    text = markdown(add_ratios(rows), spec, "bench")
    assert "| 5% |" in text and "| 40% |" in text
    assert "Noisy: train times of spikedistill BPTT vary" in text
    assert "limit" not in text.split("Noisy:")[1]
    rows[1]["train_spread"] = 0.1
    assert "Noisy" not in markdown(rows, spec, "bench")


def test_memory_warmup_peak_is_forgotten():
    """A warm-up step's peak (e.g. compiling) does not count; the later steps' does."""
    from spikedistill.bench.memory import peak_step_bytes

    calls = []

    def step():
        calls.append(1)
        size = 100_000_000 if len(calls) == 1 else 5_000_000  # 400 MB once, then 20 MB
        torch.ones(size).sum()

    peak = peak_step_bytes(step, "cpu", warmup=1)
    assert len(calls) == 3
    assert 10 * 2**20 < peak < 150 * 2**20


def test_a_stopped_bench_keeps_its_finished_points(tmp_path, monkeypatch):
    """The outputs are written after every T: a run killed at T=2 keeps T=1."""
    pytest.importorskip("matplotlib")
    from spikedistill.bench import suite

    real = suite.run_point

    def stop_at_two(spec, *args):
        if spec.T == 2:
            raise KeyboardInterrupt
        return real(spec, *args)

    monkeypatch.setattr(suite, "run_point", stop_at_two)
    out = tmp_path / "bench"
    argv = ["bench", *SMALL, "--options", json.dumps({"width": 4}), "--T", "1", "2"]
    argv += ["--variants", "limit", "bptt", "--reps", "1", "--no-memory", "--out", str(out)]
    assert main(argv) == 130  # stopped as by Ctrl-C
    with open(out.with_suffix(".csv")) as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["T"], r["variant"]) for r in rows] == [("1", "limit"), ("1", "bptt")]
    assert out.with_suffix(".png").stat().st_size > 0


def test_the_spikingjelly_row_names_the_implementation_spikingjelly_chose(tmp_path):
    """SpikingJelly picks its neuron implementation itself (on a GPU: ``cuda`` or ``triton``);
    the table says which one ran, as SpikingJelly reports it."""
    pytest.importorskip("matplotlib")
    sj = pytest.importorskip("spikingjelly.activation_based.functional")
    expected = sj.neuron_implementation("lif", torch.device("cpu"))["implementation"]
    out = tmp_path / "bench"
    argv = ["bench", *SMALL, "--options", json.dumps({"width": 4}), "--T", "1"]
    argv += ["--variants", "bptt", "spikingjelly", "--reps", "1", "--no-memory"]
    assert main([*argv, "--backend", "torch", "--out", str(out)]) == 0
    with open(out.with_suffix(".csv")) as fh:
        neurons = {r["variant"]: r["neurons"] for r in csv.DictReader(fh)}
    assert neurons == {"bptt": "torch", "spikingjelly": expected}
    assert f"| 1 | SpikingJelly LIFNode BPTT ({expected}) |" in out.with_suffix(".md").read_text()
