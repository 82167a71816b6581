import json
import re

import pytest
import torch

from spikedistill.checkpoint import load_checkpoint
from spikedistill.cli import main
from spikedistill.engine.config import load_config
from spikedistill.engine.trainer import Trainer
from spikedistill.errors import ConfigError

BASE = """
name: tiny
data: {name: digits, batch_size: 64, eval_batch_size: 500}
model: {name: convnet3, spiking: true, T: 2, options: {width: 8}}
optim: {name: sgd, lr: 0.1, momentum: 0.9, weight_decay: 5.0e-4}
sched: {name: cosine, warmup_epochs: 0.5}
train: {epochs: 3, seed: 3, deterministic: true, log_every: 5}
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(BASE)
    return str(path)


def weights(run_dir):
    return load_checkpoint(run_dir / "last.pt")["model"]


def test_train_cli_writes_the_run_directory(config_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", config_file, "train.epochs=2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out  # no progress bar off a terminal: the step lines
    assert re.search(r"^epoch 1 step 5/22 loss [\d.]+ \[ce [\d.]+\] lr", printed, re.M)
    names = {p.name for p in out.iterdir()}
    assert {"config.yaml", "log.txt", "metrics.json", "metrics.csv", "last.pt", "best.pt"} <= names
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and len(metrics["history"]) == 2
    assert metrics["best_top1"] == max(r["test_top1"] for r in metrics["history"])
    assert metrics["last_top1"] == metrics["history"][-1]["test_top1"] > 50
    assert {"train_loss", "test_top1", "seconds", "lr"} <= set(metrics["history"][0])
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt["schema_version"] == 1 and ckpt["model_name"] == "convnet3"
    assert ckpt["config"]["train"]["epochs"] == 2
    assert "epoch 2" in (out / "log.txt").read_text()
    # eval reproduces the best test accuracy from the best checkpoint
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out / "best.pt"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["top1"] == pytest.approx(metrics["best_top1"])
    assert result["samples"] == 355
    assert main(["eval", "--checkpoint", str(out), "--json"]) == 0  # the run folder: its best
    assert json.loads(capsys.readouterr().out)["top1"] == result["top1"]


def run_interrupted(config_file, out, crash_at_save: int, overrides=()):
    """Run until the ``crash_at_save``-th checkpoint write, then 'die' right after it."""
    cfg = load_config(config_file, list(overrides))
    trainer = Trainer(cfg, out)
    saves = {"n": 0}
    original = trainer.save

    def save_then_crash(name):
        original(name)
        if name == "last.pt":
            saves["n"] += 1
            if saves["n"] == crash_at_save:
                raise KeyboardInterrupt  # simulated kill

    trainer.save = save_then_crash
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    resumed = Trainer(load_config(config_file, list(overrides)), out)
    resumed.resume()
    position = (resumed.state.epoch, resumed.state.step_in_epoch)
    return resumed.fit(), position


@pytest.mark.parametrize(
    ("crash_at_save", "overrides", "position"),
    [(1, [], (1, 0)), (3, ["train.checkpoint_every=7"], (0, 21))],  # 22 batches per epoch
)
def test_resume_gives_the_same_result_as_an_uninterrupted_run(
    config_file, tmp_path, crash_at_save, overrides, position
):
    full = Trainer(load_config(config_file, overrides), tmp_path / "full").fit()
    part, resumed_at = run_interrupted(config_file, tmp_path / "part", crash_at_save, overrides)
    assert resumed_at == position
    for key in ("best_top1", "last_top1", "epochs"):
        assert part[key] == full[key]
    assert [r["test_top1"] for r in part["history"]] == [r["test_top1"] for r in full["history"]]
    assert [r["train_loss"] for r in part["history"]] == pytest.approx(
        [r["train_loss"] for r in full["history"]], rel=1e-6
    )
    a, b = weights(tmp_path / "full"), weights(tmp_path / "part")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_existing_run_is_not_overwritten_and_changed_config_is_refused(
    config_file, tmp_path, capsys
):
    out = tmp_path / "run"
    assert main(["train", config_file, "train.epochs=1", "--out", str(out)]) == 0
    before = (out / "last.pt").read_bytes()
    capsys.readouterr()
    assert main(["train", config_file, "train.epochs=1", "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", config_file, "train.epochs=2", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "train.epochs" in err and "--force" in err and "Traceback" not in err
    assert (out / "last.pt").read_bytes() == before
    args = ["train", config_file, "train.epochs=2", "--out", str(out), "--resume", "--force"]
    assert main(args) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2


def test_bad_config_gives_one_line_and_exit_code_2(config_file, tmp_path, capsys):
    assert main(["train", config_file, "model.T=0", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "spikedistill: error: model.T must be >= 1, got 0"
    assert not (tmp_path / "r").exists()


def test_eval_every_skips_evaluations_but_always_tests_the_last_epoch(config_file, tmp_path):
    cfg = load_config(config_file, ["train.eval_every=2", "model.spiking=false"])
    summary = Trainer(cfg, tmp_path / "run").fit()
    assert [r["test_top1"] is not None for r in summary["history"]] == [False, True, True]
    assert summary["best_top1"] == max(summary["history"][1]["test_top1"], summary["last_top1"])


def test_bf16_autocast_trains(config_file, tmp_path):
    cfg = load_config(config_file, ["train.epochs=1", "train.amp=bf16", "model.spiking=false"])
    summary = Trainer(cfg, tmp_path / "bf16").fit()
    assert summary["last_top1"] > 30


def test_compiled_student_trains_like_the_eager_one(tmp_path):
    """``train.compile`` (torch.compile of the SNN's training forward) changes nothing but
    speed: the same weights after an epoch, within float tolerance."""
    states = []
    for flag in ("false", "true"):
        cfg = load_config(
            None,
            [
                "data.name=digits",
                "data.train_subset=192",
                "data.batch_size=64",
                "model.name=convnet3",
                "model.spiking=true",
                "model.T=1",
                "model.options={width: 4}",
                "optim.lr=0.5",
                "train.epochs=1",
                "train.deterministic=true",
                f"train.compile={flag}",
            ],
        )
        trainer = Trainer(cfg, tmp_path / flag)
        trainer.fit()
        states.append(trainer.model.state_dict())
    eager, compiled = states
    assert not torch.equal(
        eager["stem.0.weight"], Trainer(cfg, tmp_path / "init").model.stem[0].weight
    )
    for k in eager:
        torch.testing.assert_close(compiled[k], eager[k], rtol=1e-4, atol=1e-5)


def test_a_run_saved_before_an_option_existed_resumes(tmp_path):
    """Options added since a checkpoint was written count at their defaults, not as changes."""
    cfg = load_config(None, ["data.name=synthetic", "data.options.n_train=32", "train.epochs=1",
                             "data.batch_size=16", "train.device=cpu"])  # fmt: skip
    Trainer(cfg, tmp_path / "run").fit()
    ckpt = load_checkpoint(tmp_path / "run/last.pt")
    del ckpt["config"]["model"]["init_from"]  # as written before model.init_from existed
    torch.save(ckpt, tmp_path / "run/last.pt")
    Trainer(cfg, tmp_path / "run").resume()
    ckpt["config"]["model"]["T"] = 3
    torch.save(ckpt, tmp_path / "run/last.pt")
    with pytest.raises(ConfigError, match=r"differs from the run's in model\.T"):
        Trainer(cfg, tmp_path / "run").resume()


def test_a_method_option_set_to_its_default_is_no_change_on_resume(tmp_path):
    base = ["data.name=synthetic", "data.options.n_train=32", "train.epochs=1",
            "data.batch_size=16", "train.device=cpu", "teacher.name=convnet3",
            "distill.method=kd"]  # fmt: skip
    with pytest.warns(UserWarning, match="untrained"):
        Trainer(load_config(None, base), tmp_path / "run").fit()
    with pytest.warns(UserWarning, match="untrained"):
        Trainer(load_config(None, [*base, "distill.options.kd.tau=4"]), tmp_path / "run").resume()
    with (
        pytest.warns(UserWarning, match="untrained"),
        pytest.raises(ConfigError, match=r"in distill\.options\.kd\.tau \(4\.0 -> 2\)"),
    ):
        Trainer(load_config(None, [*base, "distill.options.kd.tau=2"]), tmp_path / "run").resume()
