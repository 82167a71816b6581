"""Guards that need more than one command line: NaN data and weights, two runs on one
folder, a crash between the metrics and the checkpoint, the error line under torchrun."""

import csv
import os
import signal
import subprocess
import sys
import time
import warnings
from argparse import Namespace

import pytest
import torch
from torch.utils.data import Dataset

from bad_input import expect_one_line_error, snapshot
from spikedistill.checkpoint import load_checkpoint
from spikedistill.cli import main
from spikedistill.cli.main import HeldWarnings, run_command
from spikedistill.data import DATASETS, DatasetInfo
from spikedistill.engine import run_dir as run_dir_module
from spikedistill.engine.config import load_config
from spikedistill.engine.run_dir import RunDirError, claim_run_dir, default_run_dir
from spikedistill.engine.trainer import Trainer
from spikedistill.errors import ConfigError, DataError, NonFiniteError, RankError
from spikedistill.warning_site import PACKAGE_DIR

BASE = """
name: tiny
data: {name: digits, batch_size: 64, eval_batch_size: 500}
model: {name: convnet3, spiking: true, T: 2, options: {width: 8}}
train: {epochs: 1, seed: 0}
"""


class FloatSamples(Dataset):
    """Float 1x8x8 samples (as cached event frames are), one of them NaN or inf."""

    def __init__(self, n: int, bad: int | None) -> None:
        self.x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        self.labels = torch.arange(n) % 10
        if bad is not None:
            self.x[bad, 0, 3, 4] = float("nan") if bad % 2 else float("inf")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.x[i], int(self.labels[i])


@pytest.fixture
def float_data(monkeypatch):
    """A dataset ``float_data`` whose option ``bad`` puts a non-finite value in one sample."""

    def build(root, *, download=False, seed=0, bad_train: int = -1, bad_test: int = -1):
        info = DatasetInfo(10, 1, (8, 8), (0.5,), (0.25,))
        train = FloatSamples(128, bad_train if bad_train >= 0 else None)
        return train, FloatSamples(64, bad_test if bad_test >= 0 else None), info

    monkeypatch.setitem(DATASETS._items, "float_data", build)


TRAIN_NAN = "non-finite value (NaN or inf) in training sample {} of float_data"


@pytest.mark.parametrize(
    ("option", "message", "unchecked"),
    [
        ("bad_train: 17", TRAIN_NAN.format(17), "non-finite values in model.stem"),
        ("bad_train: 100", TRAIN_NAN.format(100), "non-finite values in model.stem"),
        ("bad_test: 40", "non-finite value (NaN or inf) in test sample 40 of float_data", None),
    ],
)
def test_nan_in_the_data_stops_naming_the_sample_before_anything_is_saved(
    option, message, unchecked, float_data, tmp_path, capsys
):
    """A bad training sample stops the run before any weights are saved; a bad test sample,
    read after the first epoch, keeps that epoch's training in last.pt, for resume."""
    config = tmp_path / "tiny.yaml"
    config.write_text(BASE)
    out = tmp_path / "run"
    argv = ["train", str(config), "data.name=float_data", f"data.options={{{option}}}"]
    expect_one_line_error([*argv, "--out", str(out)], message, capsys)
    saved = ["last.pt"] if option.startswith("bad_test") else []
    assert [p.name for p in out.glob("*.pt")] == saved and not (out / "metrics.json").exists()
    assert not (out / ".lock").exists()
    # without the data check a NaN in training ruins the weights; the weight guard stops
    # the run before they are saved
    argv = [*argv, "data.check_finite=false", "--out", str(tmp_path / "off")]
    if unchecked is None:
        assert main(argv) == 0
    else:
        expect_one_line_error(argv, unchecked, capsys)
        assert not any((tmp_path / "off").glob("*.pt"))


def test_nonfinite_weights_are_named_and_never_saved(tmp_path):
    cfg = load_config(None, ["data.name=digits", "model.name=convnet3", "train.epochs=1"])
    trainer = Trainer(cfg, tmp_path / "run")
    with torch.no_grad():
        trainer.model.head.fc.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"non-finite values in model\.head\.fc\.weight"):
        trainer.save("last.pt")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_second_run_on_a_folder_in_use_is_refused(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(BASE.replace("epochs: 1", "epochs: 200"))
    out = tmp_path / "run"
    cli = [sys.executable, "-m", "spikedistill.cli", "train", str(config), "--out", str(out)]
    first = subprocess.Popen(cli, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (out / "config.yaml").exists() and first.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert first.poll() is None, first.stderr.read()
        before = snapshot(out / "config.yaml")
        for resume in ([], ["--resume"]):
            argv = ["train", str(config), "--out", str(out), *resume]
            expect_one_line_error(argv, f"is in use by process {first.pid}", capsys)
        assert snapshot(out / "config.yaml") == before
    finally:
        first.kill()
        first.wait()
    # killed: its lock is stale now, and a resume takes the folder over
    with claim_run_dir(out, resume=True):
        assert (out / ".lock").read_text().split()[0] == str(os.getpid())
    assert not (out / ".lock").exists()


def test_a_lock_file_left_by_a_dead_run_is_taken_over(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text(f"{gone.stdout.strip()} {run_dir_module.socket.gethostname()}\n")
    with claim_run_dir(out):
        assert (out / ".lock").read_text().split()[0] == str(os.getpid())
        refused = pytest.raises(RunDirError, match=f"in use by process {os.getpid()}")
        with refused, claim_run_dir(out):  # a second claim, even from this process
            pass
    assert not (out / ".lock").exists()


HOLDER = """
import multiprocessing, os, sys, time
from pathlib import Path
from spikedistill.engine.run_dir import claim_run_dir

def work():  # runs once the fork's hooks have: then it says its pid
    print(os.getpid(), flush=True)
    time.sleep(60)

with claim_run_dir(Path(sys.argv[1])):
    worker = multiprocessing.get_context("fork").Process(target=work)
    worker.start()  # as a DataLoader worker: forked while the run holds its folder
    time.sleep(60)
"""


def test_a_killed_runs_forked_workers_do_not_hold_its_folder(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True
    )
    worker = int(holder.stdout.readline())
    try:
        holder.kill()  # SIGKILL: the worker lives on, orphaned, for a while
        holder.wait()
        with claim_run_dir(out):
            os.kill(worker, 0)  # the worker still lives: it does not hold the lock
    finally:
        os.kill(worker, signal.SIGKILL)


def test_default_run_folders_started_in_the_same_second_differ(tmp_path, monkeypatch):
    monkeypatch.setattr(run_dir_module.time, "strftime", lambda fmt: "20261204-120000")
    folders = [default_run_dir("tiny", tmp_path) for _ in range(3)]
    assert [f.name for f in folders] == [
        "tiny-20261204-120000",
        *(f"tiny-20261204-120000-{n}" for n in (2, 3)),
    ]


def test_a_crash_between_the_metrics_and_the_checkpoint_does_not_repeat_the_epoch(
    tmp_path, monkeypatch
):
    config = tmp_path / "tiny.yaml"
    config.write_text(BASE.replace("epochs: 1", "epochs: 2, checkpoint_every: 3"))
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(["train", str(config), "--out", str(full)]) == 0
    save = Trainer.save

    def crash_at_the_end_of_epoch_1(self, name):
        if name == "last.pt" and self.state.epoch == 1 and self.state.step_in_epoch == 0:
            raise KeyboardInterrupt  # after metrics.csv got epoch 1, before last.pt did
        save(self, name)

    monkeypatch.setattr(Trainer, "save", crash_at_the_end_of_epoch_1)
    assert main(["train", str(config), "--out", str(part)]) == 130
    monkeypatch.setattr(Trainer, "save", save)
    assert main(["train", str(config), "--out", str(part), "--resume"]) == 0

    def rows(run):
        with open(run / "metrics.csv") as fh:
            return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(fh)]

    assert [r["epoch"] for r in rows(part)] == ["1", "2"]
    assert rows(part) == rows(full)


def test_demo_refuses_a_folder_holding_an_earlier_demo(tmp_path, capsys):
    out = tmp_path / "demo"
    (out / "teacher").mkdir(parents=True)
    (out / "teacher" / "best.pt").write_bytes(b"an earlier demo's teacher")
    expect_one_line_error(["demo", "--out", str(out)], "already holds a run (teacher/best.pt",
                          capsys, watch=[out])  # fmt: skip


def test_under_torchrun_only_rank_0_prints_the_error(tmp_path, capsys, monkeypatch):
    config = tmp_path / "tiny.yaml"
    config.write_text(BASE)
    argv = ["train", str(config), "model.T=0", "--out", str(tmp_path / "run")]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(argv) == 2 and capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    assert main(argv) == 2 and capsys.readouterr().err.count("\n") == 1
    # in training an error may be one rank's alone (its shard): every rank names itself
    monkeypatch.setenv("RANK", "1")

    def fails_on_rank_1(args):
        raise RankError(1, DataError("non-finite value in training sample 7"))

    assert run_command(fails_on_rank_1, Namespace(debug=False)) == 2
    err = capsys.readouterr().err
    assert err == "spikedistill: error: rank 1: non-finite value in training sample 7\n"


def test_warnings_before_a_failure_do_not_add_lines(tmp_path, capsys, monkeypatch):
    def warn_then_fail(self, *args, **kwargs):
        warnings.warn("a torch warning", UserWarning, stacklevel=1)
        raise ConfigError("the mistake")

    monkeypatch.setattr(Trainer, "__init__", warn_then_fail)
    config = tmp_path / "tiny.yaml"
    config.write_text(BASE)
    expect_one_line_error(
        ["train", str(config), "--out", str(tmp_path / "r")], "the mistake", capsys
    )


def test_scientific_floats_and_overrides_after_flags_are_read(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(BASE + "optim: {lr: 5e-4, weight_decay: 1E-5}\n")
    cfg = load_config(str(config), ["sched.min_lr=1e-6"])
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.sched.min_lr) == (5e-4, 1e-5, 1e-6)


def test_billion_laughs_is_refused_within_a_second(tmp_path):
    from test_bad_inputs import LAUGHS

    config = tmp_path / "laughs.yaml"
    config.write_text(LAUGHS)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="aliases"):
        load_config(str(config))
    assert time.perf_counter() - start < 1.0


def test_warnings_are_held_until_the_setup_is_done_then_shown_as_they_come():
    shown = []
    held = HeldWarnings()
    held.show = lambda message, *rest: shown.append(str(message))
    held("during setup", UserWarning, "f.py", 1)
    assert shown == []
    held.release()
    held("while training", UserWarning, "f.py", 2)
    assert shown == ["during setup", "while training"]


def test_our_warnings_show_as_one_line_and_others_as_python_shows_them(capsys):
    held, python_shown = HeldWarnings(), []
    held.python_show = lambda message, *rest: python_shown.append(str(message))
    held.release()
    ours = os.path.join(PACKAGE_DIR, "engine", "trainer.py")
    held("teacher.checkpoint is not set:\n distilling", UserWarning, ours, 3)
    held("a torch warning", UserWarning, "/site-packages/torch/nn/x.py", 4)
    assert capsys.readouterr().err == (
        "spikedistill: warning: teacher.checkpoint is not set: distilling\n"
    )
    assert python_shown == ["a torch warning"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 but RANK is not set: start multi-process runs"),
        ({"WORLD_SIZE": "abc"}, "environment variable WORLD_SIZE='abc' is not an integer"),
        ({"WORLD_SIZE": "2", "RANK": "5", "MASTER_ADDR": "x", "MASTER_PORT": "1"},
         "RANK=5 is not in [0, WORLD_SIZE=2)"),
    ],
)  # fmt: skip
def test_a_torchrun_environment_without_torchrun_is_one_line(env, message, tmp_path, capsys,
                                                              monkeypatch):  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = tmp_path / "tiny.yaml"
    config.write_text(BASE)
    expect_one_line_error(["train", str(config), "--out", str(tmp_path / "r")], message, capsys,
                          watch=[tmp_path])  # fmt: skip


def test_rank_without_world_size_is_one_process_that_locks_and_speaks(tmp_path, capsys,
                                                                      monkeypatch):  # fmt: skip
    monkeypatch.setenv("RANK", "1")
    config = tmp_path / "tiny.yaml"
    config.write_text(BASE)
    out = tmp_path / "r"
    with claim_run_dir(out):  # held: a RANK=1 run may not slip past the lock
        expect_one_line_error(["train", str(config), "--out", str(out)], "is in use", capsys)
    expect_one_line_error(["train", str(config), "--out", ""], "--out is empty", capsys)


def test_resume_of_a_folder_without_a_run_says_it_starts_one(tmp_path, capsys):
    """A requeued job may pass --resume from its first start; a mistyped --out is seen."""
    config = tmp_path / "tiny.yaml"
    config.write_text(BASE)
    assert main(["train", str(config), "--out", str(tmp_path / "new"), "--resume"]) == 0
    assert "(nothing to resume there yet: a new run)" in capsys.readouterr().out
    assert main(["train", str(config), "--out", str(tmp_path / "new"), "--resume"]) == 0
    assert "nothing to resume" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("signum", "method", "where"),
    [
        (signal.SIGTERM, "train_step", "SIGTERM after step 5/22 of epoch 1"),
        (signal.SIGTERM, "_evaluate", "SIGTERM at the end of epoch 1"),
        (signal.SIGINT, "train_step", "Ctrl-C after step 5/22 of epoch 1"),
    ],
    ids=["sigterm-in-a-step", "sigterm-in-the-evaluation", "ctrl-c-in-a-step"],
)
def test_a_stop_signal_saves_the_run_and_resume_ends_like_an_unbroken_run(
    signum, method, where, tmp_path, monkeypatch, capsys
):
    """A scheduler's SIGTERM (time limit, preemption) or a Ctrl-C stops the run after its
    current step, or after the epoch whose evaluation it came in, saved: exit status 143
    (130), and resume continues it to the unbroken run's metrics."""
    config = tmp_path / "tiny.yaml"
    config.write_text(BASE.replace("epochs: 1", "epochs: 2"))
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(["train", str(config), "--out", str(full)]) == 0
    real, calls = getattr(Trainer, method), []

    def signalled_in_call_5(self, *args):
        calls.append(1)
        if len(calls) == (5 if method == "train_step" else 1):
            os.kill(os.getpid(), signum)  # arrives inside the call
        return real(self, *args)

    monkeypatch.setattr(Trainer, method, signalled_in_call_5)
    capsys.readouterr()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    assert main(["train", str(config), "--out", str(part)]) == 128 + signum
    stopped = f"stopped by {where}, saved in last.pt"
    assert stopped in capsys.readouterr().err and stopped in (part / "log.txt").read_text()
    assert handlers == {s: signal.getsignal(s) for s in handlers}  # the handlers are put back
    state = load_checkpoint(part / "last.pt")["state"]
    assert (state["epoch"], state["step_in_epoch"]) == (
        (0, 5) if method == "train_step" else (1, 0)
    )
    monkeypatch.setattr(Trainer, method, real)
    assert main(["train", str(config), "--out", str(part), "--resume"]) == 0

    def rows(run):
        with open(run / "metrics.csv") as fh:
            return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(fh)]

    assert rows(part) == rows(full)


def test_a_second_ctrl_c_interrupts_at_once(tmp_path, monkeypatch, capsys):
    """Ctrl-C twice within a step: no wait for the step's end; the run stops unsaved (130)."""
    config = tmp_path / "tiny.yaml"
    config.write_text(BASE)
    real, calls = Trainer.train_step, []

    def interrupted_twice_in_call_3(self, *args):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, *args)

    monkeypatch.setattr(Trainer, "train_step", interrupted_twice_in_call_3)
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err
    assert "Ctrl-C: the run stops after this step or evaluation, saved (Ctrl-C again: at " in err
    assert "spikedistill: interrupted" in err and "saved in last.pt" not in err
    assert len(calls) == 3 and not (tmp_path / "run" / "last.pt").exists()


#: convnet3, its run on image folders getting $SIGNAL, sent to its whole process group (as
#: Slurm does, and a terminal's Ctrl-C), from a DataLoader worker loading a training sample
#: once the run has trained a step (the file $TRAINED says so): the run then waits on loaders
GROUP_TERM_NET = """
import os, signal
import torch.utils.data
from spikedistill.data.folder_dataset import ImageFolderDataset
from spikedistill.models import build_model

load, sent = ImageFolderDataset.load, []

def load_and_signal(self, index, generator):
    worker = torch.utils.data.get_worker_info()  # one signal: from worker 0 alone
    trained = os.path.exists(os.environ["TRAINED"])
    if self.train and trained and worker and worker.id == 0 and not sent:
        sent.append(1)
        os.killpg(os.getpgid(0), getattr(signal, os.environ["SIGNAL"]))
    return load(self, index, generator)

ImageFolderDataset.load = load_and_signal

def net(num_classes, in_channels, spiking, T, neuron, neuron_kwargs, **options):
    model = build_model("convnet3", num_classes, in_channels=in_channels, spiking=spiking, T=T,
                        neuron=neuron, neuron_kwargs=neuron_kwargs, **options)

    def mark(module, args):
        if module.training:
            open(os.environ["TRAINED"], "w").close()

    model.register_forward_pre_hook(mark)
    return model
"""


@pytest.mark.parametrize(("name", "said"), [("SIGTERM", "SIGTERM"), ("SIGINT", "Ctrl-C")])
def test_a_stop_signal_to_the_process_group_with_loader_workers_saves_the_run(
    name, said, tmp_path, image_folder_writer
):
    image_folder_writer(tmp_path / "imagenet", per_class=12)  # 12 batches of 3
    (tmp_path / "group_term_net.py").write_text(GROUP_TERM_NET)
    config = tmp_path / "img.yaml"
    config.write_text(
        "data: {name: imagenet, batch_size: 3, num_workers: 2, options: {image_size: 16}}\n"
        "model: {name: 'group_term_net:net', spiking: true, T: 2, options: {width: 4}}\n"
        "train: {epochs: 1, seed: 0, threads: 1}\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    env["TRAINED"], env["SIGNAL"] = str(tmp_path / "trained"), name
    argv = [sys.executable, "-m", "spikedistill.cli", "train", str(config), "--data-dir"]
    argv += [str(tmp_path), "--out", str(tmp_path / "run")]
    options = {"env": env, "capture_output": True, "text": True, "timeout": 300}
    proc = subprocess.run(argv, start_new_session=True, **options)  # its own process group
    assert proc.returncode == 128 + getattr(signal, name), proc.stderr
    assert f"stopped by {said}" in proc.stderr
    assert proc.stderr.count("Ctrl-C: the run stops") == (name == "SIGINT")  # not the workers
    assert load_checkpoint(tmp_path / "run" / "last.pt")["state"]["step_in_epoch"] > 0
