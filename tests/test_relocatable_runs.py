"""Run directories name their teacher relative to themselves (inside the runs tree) or
absolutely, so ``eval --stm`` finds it from any working directory and after a move."""

import json
import math
import os
import shutil

import pytest
import yaml

from spikedistill.cli import main
from spikedistill.diagnostics.report import analyze_run
from spikedistill.engine.load import read_checkpoint
from spikedistill.engine.run_paths import resolved_path, stored_path

CONFIG = """
data: {name: synthetic, batch_size: 16, eval_batch_size: 64,
       options: {shape: [1, 8, 8], num_classes: 4, n_train: 32, n_test: 32}}
model: {name: convnet3, spiking: true, T: 2, options: {width: 4}}
optim: {name: sgd, lr: 0.05}
train: {epochs: 1, seed: 1, device: cpu}
"""
KD = ["teacher.name=convnet3", "teacher.options={width: 4}", "distill.method=kd"]


def _train(cwd, config, out, *overrides):
    os.chdir(cwd)
    assert main(["train", str(config), *overrides, "--out", str(out)]) == 0


def _stm(run, capsys):
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run), "--stm", "--json"]) == 0
    return json.loads(capsys.readouterr().out)["stm"]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with a teacher run and a KD student run, trained from inside it
    with relative paths (``runs/teacher/best.pt``)."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "exp.yaml").write_text(CONFIG)
    monkeypatch.chdir(root)
    _train(root, "exp.yaml", "runs/teacher", "model.spiking=false")
    _train(root, "exp.yaml", "runs/student", *KD, "teacher.checkpoint=runs/teacher/best.pt")
    return root


def test_eval_stm_finds_the_teacher_from_elsewhere_and_after_a_move(
    project, tmp_path, capsys, monkeypatch
):
    stored = yaml.safe_load((project / "runs/student/config.yaml").read_text())
    assert stored["teacher"]["checkpoint"] == os.path.join("..", "teacher", "best.pt")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert math.isfinite(_stm(project / "runs/student", capsys))
    assert math.isfinite(_stm(project / "runs/student/last.pt", capsys))
    moved = tmp_path / "moved-runs"
    shutil.move(str(project / "runs"), str(moved))
    assert math.isfinite(_stm(moved / "student", capsys))
    _, cfg = read_checkpoint(moved / "student")
    assert cfg.teacher.checkpoint == str(moved / "teacher" / "best.pt")
    report = analyze_run(moved / "student", batches=1)
    assert report.notes == [] and math.isfinite(report.stm)


def test_a_teacher_outside_the_runs_tree_is_stored_absolute(project, tmp_path, capsys):
    outside = tmp_path / "weights"
    shutil.copytree(project / "runs/teacher", outside)
    _train(
        project, "exp.yaml", "runs/far", f"teacher.checkpoint={os.path.relpath(outside)}/best.pt",
        *KD, f"model.init_from={os.path.relpath(project / 'runs/student')}",
    )  # fmt: skip
    stored = yaml.safe_load((project / "runs/far/config.yaml").read_text())
    assert stored["teacher"]["checkpoint"] == str(outside / "best.pt")
    assert stored["model"]["init_from"] == os.path.join("..", "student")
    os.chdir(tmp_path)
    assert math.isfinite(_stm(project / "runs/far", capsys))


def test_resume_compares_resolved_paths(project, capsys):
    same = [*KD, "teacher.checkpoint=runs/teacher/best.pt"]
    _train(project, "exp.yaml", "runs/student", *same, "--resume")  # the same teacher
    capsys.readouterr()
    other = [*KD, "teacher.checkpoint=runs/teacher/last.pt"]
    assert main(["train", "exp.yaml", *other, "--out", "runs/student", "--resume"]) == 2
    assert "teacher.checkpoint" in capsys.readouterr().err


def test_eval_stm_rebuilds_a_teacher_run_with_its_own_options(project, capsys):
    """``--teacher convnet3`` of a run trained with ``width: 4``: the options come from its
    checkpoint; the STM equals the student run's against its own (the same) teacher."""
    capsys.readouterr()
    argv = ["eval", "--checkpoint", "runs/student", "--stm", "--json", "--teacher", "convnet3",
            "--teacher-checkpoint", "runs/teacher/best.pt"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["stm"] == _stm(project / "runs/student", capsys)


def test_a_run_resumes_from_its_own_config_yaml_and_keeps_it_current(project, capsys):
    """The run's config.yaml names the teacher relative to the run folder; --force rewrites
    it with the changed config."""
    config = "runs/student/config.yaml"
    assert main(["train", config, "--resume"]) == 0  # its own run: no --out needed
    assert main(["train", "exp.yaml", "--resume"]) == 2  # any other file needs --out
    assert "--resume needs --out RUN_DIR" in capsys.readouterr().err
    assert main(["train", config, "train.epochs=2", "--out", "runs/student", "--resume",
                 "--force"]) == 0  # fmt: skip
    stored = yaml.safe_load((project / config).read_text())
    assert stored["train"]["epochs"] == 2
    assert stored["teacher"]["checkpoint"] == os.path.join("..", "teacher", "best.pt")


def test_paths_of_older_runs_resolve_against_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "w.pt").write_text("")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "r"
    assert resolved_path("w.pt", run) == str(tmp_path / "w.pt")  # written before: cwd
    assert resolved_path("../x.pt", run) == str(tmp_path / "runs" / "x.pt")
    assert stored_path("runs/t/best.pt", "runs/r") == os.path.join("..", "t", "best.pt")
    assert stored_path("w.pt", "runs/r") == str(tmp_path / "w.pt")


def test_eval_and_report_find_the_data_the_run_trained_on_without_data_dir(
    tmp_path, monkeypatch, mnist_writer, capsys
):
    """``--data-dir`` is not part of the config (the same config trains anywhere), but the
    checkpoints record the folder, so eval and report need no ``--data-dir`` of their own."""
    data = tmp_path / "elsewhere"
    mnist_writer(data / "mnist")
    monkeypatch.setenv("SPIKEDISTILL_DATA", str(tmp_path / "empty"))
    config = tmp_path / "mnist.yaml"
    config.write_text(CONFIG.replace("name: synthetic", "name: mnist").replace(
        "options: {shape: [1, 8, 8], num_classes: 4, n_train: 32, n_test: 32}", "options: {}"
    ))  # fmt: skip
    _train(tmp_path, config, tmp_path / "run", "--data-dir", str(data))
    ckpt, cfg = read_checkpoint(tmp_path / "run" / "best.pt")
    assert cfg.data.root is None and ckpt["data_root"] == str(data.absolute())
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(tmp_path / "run"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 20
    assert analyze_run(tmp_path / "run", batches=1).ops is not None
    os.chdir(tmp_path / "empty") if (tmp_path / "empty").mkdir() is None else None
    rel = ["train", str(config), "--data-dir", os.path.relpath(data), "--out", "../rel"]
    assert main([*rel, "data.root=../elsewhere"]) == 0  # a data.root relative to this folder
    os.chdir(tmp_path.parent)  # from elsewhere it is no folder: the recorded one is used
    assert main(["eval", "--checkpoint", str(tmp_path / "rel")]) == 0
    shutil.move(data, tmp_path / "moved")  # gone: the default places, then the usual error
    assert main(["eval", "--checkpoint", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"(the run trained on the data in {data.absolute()}, which is gone)" in err
