"""No lost work: SIGKILL at random moments then ``--resume``; NaN losses; out-of-memory;
the config loader under fuzzing."""

import contextlib
import json
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from spikedistill.checkpoint import load_checkpoint
from spikedistill.cli import main
from spikedistill.engine.config import config_from_dict, load_config
from spikedistill.engine.trainer import Trainer
from spikedistill.errors import NonFiniteLossError, SpikeDistillError

BASE = """
name: tiny
data: {name: digits, batch_size: 64, eval_batch_size: 500}
model: {name: convnet3, spiking: true, T: 2, options: {width: 8}}
optim: {name: sgd, lr: 0.1, momentum: 0.9}
train: {epochs: 3, seed: 1, deterministic: true, checkpoint_every: 4, threads: 1}
"""


def _cli(*args):
    return [sys.executable, "-m", "spikedistill.cli", "train", *args]


def _mtime(path) -> int:
    return path.stat().st_mtime_ns if path.exists() else 0


def _wait_for_a_new_checkpoint(path, since: int, proc, timeout: float = 120.0) -> None:
    """Until ``proc`` replaces ``path`` (written after ``since``) or exits."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and _mtime(path) <= since and time.monotonic() < deadline:
        time.sleep(0.01)


def test_sigkill_at_five_random_moments_then_resume_matches_an_uninterrupted_run(tmp_path):
    """Each attempt is killed at a random moment of its training: up to 0.1 s (a few steps)
    after its first checkpoint, so the moments follow the run's own progress, not the speed of
    the machine (fixed delays let a fast machine finish the run before most kills)."""
    config = tmp_path / "tiny.yaml"
    config.write_text(BASE)
    full, part = tmp_path / "full", tmp_path / "part"
    subprocess.run(_cli(str(config), "--out", str(full)), check=True, capture_output=True)
    rng = random.Random(0)
    killed = 0
    for _ in range(5):
        resume = ["--resume"] if (part / "last.pt").exists() else []
        since = _mtime(part / "last.pt")
        proc = subprocess.Popen(
            _cli(str(config), "--out", str(part), *resume),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_a_new_checkpoint(part / "last.pt", since, proc)
        time.sleep(rng.uniform(0.0, 0.1))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        for ckpt in part.glob("*.pt"):  # never a half-written checkpoint
            load_checkpoint(ckpt)
    done = subprocess.run(
        _cli(str(config), "--out", str(part), "--resume"), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert killed >= 3  # most of the five attempts were cut short
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (full, part))
    assert [r["test_top1"] for r in a["history"]] == [r["test_top1"] for r in b["history"]]
    assert (a["best_top1"], a["last_top1"]) == (b["best_top1"], b["last_top1"])
    wa, wb = (load_checkpoint(d / "last.pt")["model"] for d in (full, part))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not list(part.glob(".*.tmp"))  # temporaries of killed writes are cleaned up


class _NaNAtCalls(nn.Module):
    """CE plus a ``kd`` term that is NaN at the given (1-based) calls."""

    def __init__(self, calls):
        super().__init__()
        self.bad, self.calls = set(calls), 0

    def forward(self, student, x, y, index=None):
        logits = student(x)
        self.calls += 1
        extra = torch.tensor(float("nan") if self.calls in self.bad else 0.0)
        return logits, {"ce": nn.functional.cross_entropy(logits, y), "kd": extra}


def _trainer(tmp_path, bad_calls, *overrides):
    cfg = load_config(
        None,
        [
            "data.name=digits",
            "data.batch_size=64",
            "model.name=convnet3",
            "train.epochs=1",
            "train.checkpoint_every=2",
            *overrides,
        ],
    )
    return Trainer(cfg, tmp_path / "run", objective=_NaNAtCalls(bad_calls))


def test_nonfinite_loss_stops_naming_term_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = _trainer(tmp_path, [5])
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(kd\) at step 5 \(epoch 1\)"):
        trainer.fit()
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["state"]["global_step"] == 4
    assert torch.equal(last["model"]["stem.0.weight"], trainer.model.stem[0].weight)


def test_nonfinite_loss_before_any_checkpoint_says_so(tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"at step 1 \(epoch 1\)[^.]*no checkpoint yet"):
        _trainer(tmp_path, [1]).fit()
    assert not (tmp_path / "run" / "last.pt").exists()


def test_nonfinite_steps_are_skipped_without_an_update_up_to_the_budget(tmp_path):
    trainer = _trainer(tmp_path, [3, 6], "train.skip_nonfinite=2")
    weights = []  # the stem weights before every training forward

    def record(module, args):
        if module.training:
            weights.append(module.stem[0].weight.detach().clone())

    trainer.model.register_forward_pre_hook(record)
    summary = trainer.fit()
    assert summary["epochs"] == 1 and trainer.state.skipped_steps == 2
    assert torch.equal(weights[2], weights[3])  # call 3 was skipped: no update
    assert not torch.equal(weights[1], weights[2])  # call 2 updated
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "step skipped (1/2)" in log and "step skipped (2/2)" in log
    # a third NaN exceeds the budget
    with pytest.raises(NonFiniteLossError, match="stopped after 2 skipped"):
        _trainer(tmp_path / "b", [1, 2, 3], "train.skip_nonfinite=2").fit()


@pytest.mark.parametrize(
    "error",
    [RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), MemoryError()],
    ids=["cuda", "python"],
)
def test_out_of_memory_suggests_the_knobs(error, tmp_path, monkeypatch, capsys):
    def boom(self):
        raise error

    monkeypatch.setattr(Trainer, "fit", boom)
    config = tmp_path / "tiny.yaml"
    config.write_text(BASE)
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spikedistill: error: out of memory") and err.count("\n") == 1
    assert "data.batch_size" in err and "train.backprop=rate" in err


def test_unexpected_errors_give_one_line_exit_1_and_debug_shows_them(tmp_path, monkeypatch, capsys):
    def boom(self):
        raise RuntimeError("a bug\nsecond line")

    monkeypatch.setattr(Trainer, "fit", boom)
    config = tmp_path / "tiny.yaml"
    config.write_text(BASE)
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    expected = (
        "unexpected RuntimeError: a bug (a bug? spikedistill --debug COMMAND ... shows the "
        "traceback)"
    )
    assert err == f"spikedistill: error: {expected}\n"
    with pytest.raises(RuntimeError, match="a bug"):
        main(["--debug", "train", str(config), "--out", str(tmp_path / "run2")])


# -- fuzzing: a result or the project's own error, nothing else ------------------------------
SECTIONS = ["name", "data", "model", "optim", "sched", "train", "teacher", "distill", "T", "x"]
KEYS = [
    "name",
    "T",
    "lr",
    "epochs",
    "batch_size",
    "spiking",
    "options",
    "neuron_kwargs",
    "backprop",
    "label_noise",
    "decay",
    "method",
    "base",
    "seed",
    "amp",
    "threshold",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=3),
    ),
    max_leaves=8,
)
configs = st.dictionaries(
    st.sampled_from(SECTIONS),
    st.dictionaries(st.sampled_from(KEYS), values, max_size=4) | values,
    max_size=4,
)
overrides = st.lists(
    st.builds(
        "{}.{}={}".format,
        st.sampled_from(SECTIONS),
        st.sampled_from(KEYS),
        st.text(max_size=10),
    )
    | st.text(max_size=20),
    max_size=4,
)


@settings(max_examples=150, deadline=None)
@given(configs)
def test_fuzzed_config_dicts_give_a_config_or_a_config_error(data):
    with contextlib.suppress(SpikeDistillError):
        config_from_dict(data)


@settings(max_examples=150, deadline=None)
@given(overrides)
def test_fuzzed_overrides_give_a_config_or_a_config_error(items):
    with contextlib.suppress(SpikeDistillError):
        load_config(None, items)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_fuzzed_yaml_files_give_a_config_or_a_config_error(tmp_path, raw):
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(raw)
    with contextlib.suppress(SpikeDistillError):
        load_config(str(path))


def test_source_loads_safely():
    """Static check of the package: ``torch.load`` only with ``weights_only=True``, YAML only
    through ``safe_load``, no ``pickle.load``/``eval``/``exec``."""
    import ast
    from pathlib import Path

    import spikedistill

    problems = []
    for path in Path(spikedistill.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            where = f"{path.name}:{node.lineno} {name}"
            if name == "torch.load":
                kw = {k.arg: k.value for k in node.keywords}
                if not (
                    isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value
                ):
                    problems.append(where)
            elif name in (
                "eval",
                "exec",
                "yaml.load",
                "pickle.load",
                "pickle.loads",
                "yaml.unsafe_load",
            ):
                problems.append(where)
    assert problems == []
