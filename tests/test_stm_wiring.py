"""The STM definition (``variant``: the paper's by default, or the former ``normalized``) from
the config (``train.stm_variant``, periodic STM) and ``spikedistill eval --stm --stm-variant``;
``stm_last10`` in the run summary."""

import json
import math

import pytest

from spikedistill.cli import main
from spikedistill.cli.evaluate import STM_VARIANT_NAMES
from spikedistill.engine.config import load_config
from spikedistill.engine.train_state import run_summary
from spikedistill.errors import ConfigError
from spikedistill.metrics.stm import STM_VARIANTS

TINY = [
    "data.name=digits",
    "data.train_subset=160",
    "data.batch_size=32",
    "model.name=convnet3",
    "model.spiking=true",
    "model.T=2",
    "model.options={width: 8}",
    "teacher.name=convnet3",
    "teacher.options={width: 8}",
    "distill.method=kd",
    "train.epochs=1",
    "train.stm_every=1",
]


def test_config_field_and_cli_choices():
    assert load_config().train.stm_variant == "paper"
    assert load_config(None, ["train.stm_variant=normalized"]).train.stm_variant == "normalized"
    with pytest.raises(ConfigError, match=r"train\.stm_variant must be one of paper, normalized"):
        load_config(None, ["train.stm_variant=log10"])
    assert tuple(STM_VARIANTS) == STM_VARIANT_NAMES  # the CLI's list, kept free of torch


def test_stm_last10_in_the_run_summary():
    cfg = load_config(None, ["train.stm_variant=normalized"])
    history = [{"test_top1": 50.0, "stm": float(k)} for k in range(12)]
    history.insert(5, {"test_top1": None})  # an epoch without evaluation, hence without STM
    summary = run_summary(cfg, history)
    assert summary["stm_last10"] == pytest.approx(sum(range(2, 12)) / 10)
    assert summary["stm_variant"] == "normalized"
    short = run_summary(cfg, history[:3])  # fewer than 10 records: all of them
    assert short["stm_last10"] == pytest.approx(1.0)
    plain = run_summary(cfg, [{"test_top1": 50.0}])
    assert "stm_last10" not in plain and "stm_variant" not in plain


def test_a_baseline_run_records_its_stm_against_the_teacher(tmp_path, capsys):
    """distill.method none with a teacher and train.stm_every: CE training, the STM recorded
    each epoch, equal to eval --stm of the run (the same teacher, the same first batch)."""
    (tmp_path / "tiny.yaml").write_text("name: stm\n")
    argv = ["train", str(tmp_path / "tiny.yaml"), *TINY, "distill.method=none"]
    teacher = tmp_path / "teacher"
    assert main([*argv, "model.spiking=false", "train.stm_every=0", "--out", str(teacher)]) == 0
    assert "teacher is not used" in capsys.readouterr().err  # no STM asked: the warning
    out = tmp_path / "run"
    argv.append(f"teacher.checkpoint={teacher / 'best.pt'}")
    assert main([*argv, "train.epochs=2", "--out", str(out)]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert [set(row) & {"train_kd"} for row in summary["history"]] == [set(), set()]
    recorded = [row["stm"] for row in summary["history"]]
    assert all(math.isfinite(v) for v in recorded) and recorded[0] != recorded[1]
    assert "teacher is not used" not in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--stm", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stm"] == pytest.approx(recorded[-1], rel=1e-9)


def test_periodic_and_eval_stm_follow_the_variant(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text("name: stm\n")
    out = tmp_path / "run"
    argv = ["train", str(tmp_path / "tiny.yaml"), *TINY, "train.stm_variant=normalized"]
    assert main([*argv, "--out", str(out)]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    recorded = summary["history"][-1]["stm"]
    assert summary["stm_variant"] == "normalized" and summary["stm_last10"] == recorded
    assert 0 < recorded < 4  # row-normalised Grams: each pair's MSE is at most 4 / B

    capsys.readouterr()
    ev = ["eval", "--checkpoint", str(out / "last.pt"), "--stm", "--json"]
    assert main([*ev, "--stm-variant", "normalized"]) == 0
    old = json.loads(capsys.readouterr().out)
    # the same first test batch of data.batch_size samples as the periodic STM
    assert old["stm_variant"] == "normalized" and old["stm"] == pytest.approx(recorded, rel=1e-9)
    assert main(ev) == 0
    paper = json.loads(capsys.readouterr().out)
    assert paper["stm_variant"] == "paper" and math.isfinite(paper["stm"])
    assert paper["stm"] != pytest.approx(old["stm"])
    assert main(ev[:-1]) == 0
    assert f"STM {paper['stm']:.4f} (paper)" in capsys.readouterr().out
    assert main([*ev, "--stm-variant", "sastc"]) == 2
    assert "invalid choice: 'sastc'" in capsys.readouterr().err
