"""``torchrun --nproc_per_node=2`` on CPUs (gloo) against one process over the same batches."""

import json
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from spikedistill.checkpoint import load_checkpoint
from spikedistill.cli import main

# no BatchNorm: PyTorch's SyncBatchNorm needs GPUs, and per-process BN statistics would differ;
# without it the default threshold never fires (the net would learn its biases alone)
CONFIG = """
name: ddp
data: {name: digits, batch_size: 32, eval_batch_size: 50}
model: {name: convnet3, spiking: true, T: 2, options: {width: 8, batch_norm: false},
        neuron_kwargs: {threshold: 0.2}}
optim: {name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 1.0e-4}
sched: {name: none}
train: {epochs: 1, seed: 0, deterministic: true, threads: 1}
"""

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed missing")


def _torchrun(*args, env=None, returncode=0, timeout=600):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*cmd, "-m", "spikedistill.cli", "train", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert (proc.returncode == 0) == (returncode == 0), proc.stderr[-3000:]
    return proc


def _metrics(run):
    return json.loads((run / "metrics.json").read_text())


def _assert_same_weights(a, b):
    wa, wb = (load_checkpoint(r / "last.pt")["model"] for r in (a, b))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5, msg=k)


def test_two_process_ddp_equals_one_process_and_resumes(tmp_path, capsys):
    config = tmp_path / "ddp.yaml"
    config.write_text(CONFIG)
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert main(["train", str(config), "--out", str(single)]) == 0
    out = _torchrun(str(config), "--out", str(ddp))
    assert out.stdout.count("done: best top-1") == 1  # rank 0 reports, rank 1 stays quiet
    _assert_same_weights(single, ddp)
    ckpt = load_checkpoint(ddp / "last.pt")
    assert ckpt["world_size"] == 2
    assert "batch 32 (2 processes)" in (ddp / "log.txt").read_text()  # the global batch
    s, d = _metrics(single), _metrics(ddp)
    n_test = s["history"][0]["test_samples"]
    assert d["history"][0]["test_samples"] == n_test == 355  # each test sample counted once
    assert abs(d["last_top1"] - s["last_top1"]) <= 100 / n_test  # at most one sample apart
    assert s["last_top1"] > 20  # it learns (chance: 10 %)

    # resume the 2-process run for a second epoch; the single run trains 2 epochs straight
    _torchrun(str(config), "train.epochs=2", "--out", str(ddp), "--resume", "--force")
    assert main(["train", str(config), "train.epochs=2", "--out", str(tmp_path / "s2")]) == 0
    _assert_same_weights(tmp_path / "s2", ddp)
    assert [r["epoch"] for r in _metrics(ddp)["history"]] == [1, 2]

    # the same checkpoint in one process: another sharding, refused without --force
    capsys.readouterr()
    assert main(["train", str(config), "train.epochs=2", "--out", str(ddp), "--resume"]) == 2
    assert "world size (2 -> 1 processes)" in capsys.readouterr().err


#: a convnet3 whose every process kills itself (SIGKILL, as a preempted job) at the
#: training forward $KILL_AT, whose rank 0 gets SIGTERM at $TERM_AT, and whose rank 1 (or
#: only process) gives NaN logits at $NAN_AT, when those are set
KILLED_NET = """
import os, signal
from spikedistill.models import build_model

def net(num_classes, in_channels, spiking, T, neuron, neuron_kwargs, **options):
    model = build_model("convnet3", num_classes, in_channels=in_channels, spiking=spiking, T=T,
                        neuron=neuron, neuron_kwargs=neuron_kwargs, **options)
    calls = [0]

    def count(module, args):
        calls[0] += module.training
        if calls[0] == int(os.environ.get("KILL_AT", -1)):
            os.kill(os.getpid(), signal.SIGKILL)
        if calls[0] == int(os.environ.get("TERM_AT", -1)) and os.environ["RANK"] == "0":
            os.kill(os.getpid(), signal.SIGTERM)

    def poison(module, args, output):
        nan = calls[0] == int(os.environ.get("NAN_AT", -1))
        return output * float("nan") if nan and os.environ.get("RANK", "1") == "1" else None

    model.register_forward_pre_hook(count)
    model.register_forward_hook(poison)
    return model
"""


def test_a_ddp_run_killed_or_stopped_mid_epoch_resumes_to_the_metrics_of_an_unbroken_one(
    tmp_path,
):
    """The running sums of a partial epoch in ``last.pt`` are all ranks' (each rank used to
    save only rank 0's, and on resume every rank took them: train loss and top-1 were off).
    SIGTERM to one rank stops every rank after the same step, saved (exit status 143)."""
    import os

    (tmp_path / "killed_net.py").write_text(KILLED_NET)
    config = tmp_path / "ddp.yaml"
    config.write_text(CONFIG.replace("threads: 1", "threads: 1, checkpoint_every: 4"))
    args = [str(config), "model.name=killed_net:net"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    _torchrun(*args, "--out", str(tmp_path / "unbroken"), env=env)
    killed = str(tmp_path / "killed")
    _torchrun(*args, "--out", killed, env={**env, "KILL_AT": "11"}, returncode=1)
    state = load_checkpoint(tmp_path / "killed" / "last.pt")["state"]
    assert (state["epoch"], state["step_in_epoch"]) == (0, 8)  # inside the 45-step epoch
    _torchrun(*args, "--out", killed, "--resume", env=env)
    stopped = str(tmp_path / "stopped")
    out = _torchrun(*args, "--out", stopped, env={**env, "TERM_AT": "7"}, returncode=143)
    assert "exitcode  : 143" in out.stderr
    assert load_checkpoint(tmp_path / "stopped" / "last.pt")["state"]["global_step"] == 7
    _torchrun(*args, "--out", stopped, "--resume", env=env)
    (want,) = _metrics(tmp_path / "unbroken")["history"]
    for run in ("killed", "stopped"):
        (got,) = _metrics(tmp_path / run)["history"]
        for key in ("train_loss", "train_ce", "train_top1", "test_top1", "test_loss"):
            assert got[key] == pytest.approx(want[key], rel=1e-9), (run, key)


def test_a_nonfinite_loss_on_one_rank_is_skipped_by_every_rank(tmp_path, monkeypatch):
    """``train.skip_nonfinite`` under torchrun: a NaN loss in rank 1's shard alone makes both
    ranks skip that step, so the run equals one process skipping it. Rank 0 used to step
    alone, and its gradient all-reduces met rank 1's of the next step."""
    import os

    (tmp_path / "killed_net.py").write_text(KILLED_NET)
    config = tmp_path / "ddp.yaml"
    config.write_text(CONFIG)
    args = [str(config), "model.name=killed_net:net", "train.skip_nonfinite=1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    _torchrun(*args, "--out", str(tmp_path / "ddp"), env={**env, "NAN_AT": "5"}, timeout=300)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("NAN_AT", "5")
    assert main(["train", *args, "--out", str(tmp_path / "single")]) == 0
    log = (tmp_path / "ddp" / "log.txt").read_text()
    assert "non-finite loss (on another rank) at step 5 (epoch 1): step skipped (1/1)" in log
    for run in ("ddp", "single"):
        state = load_checkpoint(tmp_path / run / "last.pt")["state"]
        assert (state["skipped_steps"], state["global_step"]) == (1, 45)
    _assert_same_weights(tmp_path / "single", tmp_path / "ddp")


@pytest.mark.parametrize("split", ["val", "train"])
def test_an_error_on_one_rank_ends_the_run_instead_of_hanging_it(
    tmp_path, image_folder_writer, split
):
    """An image that cannot be decoded fails on one rank while the other waits in a
    collective; closing waited for it at a barrier, and the run hung until killed. A test
    image now ends every rank's evaluation together, so they save the epoch trained."""
    image_folder_writer(tmp_path / "imagenet", per_class=4)
    (tmp_path / "imagenet" / split / "dog" / f"{split}_0.png").write_bytes(b"not a png")
    config = tmp_path / "img.yaml"
    config.write_text(
        "data: {name: imagenet, batch_size: 4, eval_batch_size: 2, options: {image_size: 16}}\n"
        "model: {name: convnet3, spiking: true, T: 2, options: {width: 4}}\n"
        "train: {epochs: 1, seed: 0, threads: 1}\n"
    )
    args = [str(config), "--data-dir", str(tmp_path), "--out", str(tmp_path / "run")]
    out = _torchrun(*args, returncode=2, timeout=120)  # it hung: a TimeoutExpired
    assert f"{split}_0.png: cannot decode image" in out.stderr
    saved = (tmp_path / "run" / "last.pt").exists()
    assert saved == (split == "val")  # a training file: one rank's, while the other waits
    if saved:
        assert "epoch 1's training is saved: fix the data, then resume" in out.stderr
        assert load_checkpoint(tmp_path / "run" / "last.pt")["state"]["step_in_epoch"] == 3
