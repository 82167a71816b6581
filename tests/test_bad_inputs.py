"""Every user mistake ``spikedistill train`` can meet: one line on stderr, exit status 2,
nothing changed on disk (tests/bad_input.py makes the checks).

Each row is (id, CLI arguments, a fragment the message must contain, how to prepare the run
folder). Arguments before the first flag are overrides; ``{files}`` is a folder of prepared
bad files, ``{out}`` the run folder. Data-format rows live in tests/test_bad_data_inputs.py,
those of eval/report/bench in tests/test_bad_command_inputs.py.
"""

import fcntl
import gzip
import os
import shutil
import socket

import numpy as np
import pytest
import torch

from bad_input import expect_one_line_error
from conftest import idx_bytes
from spikedistill.cli import main
from spikedistill.models import build_model

BASE = """
name: tiny
data: {name: digits, batch_size: 64, eval_batch_size: 500}
model: {name: convnet3, spiking: true, T: 2, options: {width: 8}}
train: {epochs: 1, seed: 0}
"""
TEACHER = ["distill.method=kd", "teacher.name=convnet3", "teacher.options={width: 8}"]
LAUGHS = "\n".join(
    ["teacher:", "  options:", "    a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
)


def _write(name, text):
    def prepare(out, files):
        out.mkdir()
        (out / name).write_text(text)

    return prepare


def _copy_run(*drop, change=None):
    """Prepare ``out`` as a copy of a real trained run, without ``drop``; ``change(ckpt)``
    edits its last.pt."""

    def prepare(out, files):
        shutil.copytree(files / "run", out)
        for name in drop:
            (out / name).unlink()
        if change is not None:
            ckpt = torch.load(out / "last.pt", weights_only=True)
            change(ckpt)
            torch.save(ckpt, out / "last.pt")

    return prepare


HELD = []  # lock files held open by this test process


def _lock_held(out, files):
    """The run folder locked by another holder (here: this process, through its own open
    file description, which ``flock`` treats as a separate owner)."""
    out.mkdir()
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    HELD.append(fd)


ROWS = [
    # config syntax and values
    ("invalid-yaml", ["--config-text", "model: {name: [convnet3"], "invalid YAML", None),
    ("yaml-billion-laughs", ["--config-text", LAUGHS], "aliases (*name) are not supported", None),
    ("yaml-alias-in-override", ["teacher.options={a: &x [1], b: *x}"], "aliases", None),
    ("override-bad-yaml", ["model.T=[1"], "invalid YAML in override 'model.T=[1'", None),
    ("override-after-flags", ["--data-dir", "{files}", "model.T=0"], "model.T must be >= 1", None),
    ("unknown-key", ["train.epochz=2"], "did you mean 'train.epochs'", None),
    ("wrong-type", ["model.T=two"], "model.T: expected int", None),
    ("T-below-1", ["model.T=0"], "model.T must be >= 1", None),
    ("T-huge", ["model.T=100000000000000000000000"], "model.T: 1000", None),
    ("seed-huge", ["train.seed=100000000000000000000000"], "train.seed: 1000", None),
    ("seed-negative", ["train.seed=-1"], "train.seed must be >= 0", None),
    ("grad-clip-negative", ["train.grad_clip=-1"], "train.grad_clip must be > 0", None),
    ("threads-negative", ["train.threads=-1"], "train.threads must be >= 1", None),
    ("device-bogus", ["train.device=bogus"], "train.device must be auto, cpu", None),
    ("device-cuda-without-gpu", ["train.device=cuda:0"], "CUDA is not available", None),
    ("warmup-inf", ["sched.warmup_epochs=.inf"], "sched.warmup_epochs: expected a finite", None),
    ("lr-nan", ["optim.lr=.nan"], "optim.lr: expected a finite number", None),
    ("negative-lr", ["optim.lr=-1e-3"], "optim.lr must be > 0, got -0.001", None),
    ("label-noise-1", ["data.label_noise=1.0"], "label_noise must lie in [0, 1)", None),
    ("fp16-on-cpu", ["train.amp=fp16"], "fp16 needs a GPU", None),
    ("compile-with-rate-bp", ["train.backprop=rate", "train.compile=true"], "bptt only", None),
    ("rate-stored-steps", ["train.rate_stored_steps=0"], "rate_stored_steps must be an", None),
    ("unknown-neuron-backend", ["train.neuron_backend=cuda"], "neuron_backend must be one", None),
    ("base-chain-too-deep", ["--config-file", "{files}/chain/c1199.yaml"], "more than 16", None),
    (
        "yaml-duplicate-key",
        ["--config-text", BASE + "train: {epochs: 2}\n"],
        "the key 'train' appears twice",
        None,
    ),
    ("config-not-a-file", ["--config-file", "{files}/fifo"], "is not a regular file", None),
    (
        "sched-gamma-negative",
        ["sched.name=step", "sched.gamma=-1"],
        "sched.gamma must be > 0",
        None,
    ),
    ("sched-min-lr-negative", ["sched.min_lr=-5"], "sched.min_lr must be >= 0", None),
    # names
    ("unknown-model", ["model.name=resnet99"], "Valid: convnet3", None),
    ("unknown-method", ["distill.method=kdd"], "Did you mean 'kd'", None),
    ("unknown-dataset", ["data.name=mnsit"], "Did you mean 'mnist'", None),
    (
        "own-dataset-not-importable",
        ["data.name=no_such_pkg.data:build"],
        "dataset 'no_such_pkg.data:build': cannot import 'no_such_pkg.data'",
        None,
    ),
    (
        "own-method-not-importable",
        [*TEACHER[1:], "distill.method=kd+no_such_pkg.m:Method"],
        "distillation method 'no_such_pkg.m:Method': cannot import 'no_such_pkg.m'",
        None,
    ),
    (
        "own-method-not-a-method",
        [*TEACHER[1:], "distill.method=kd+os.path:join"],
        "distillation method 'os.path:join' is not a DistillMethod subclass",
        None,
    ),
    ("unknown-neuron-preset", ["model.neuron=tdbm"], "Valid: if, ratebp, tdbn", None),
    # free-form option dicts, checked against the signature of what takes them
    ("width-0", ["model.options={width: 0}"], "model.options.width must be >= 1, got 0", None),
    ("width-negative", ["model.options={width: -4}"], "model.options.width must be >= 1", None),
    ("width-text", ["model.options={width: abc}"], "model.options.width: expected int", None),
    ("width-float", ["model.options={width: 8.5}"], "model.options.width: expected int", None),
    ("model-option-unknown", ["model.options={widht: 8}"], "did you mean 'model.options", None),
    ("model-option-T", ["model.options={T: 4}"], "model.options.T: set model.T", None),
    ("model-options-list", ["model.options=[1]"], "model.options: expected a mapping", None),
    ("threshold-not-positive", ["model.neuron_kwargs={threshold: 0}"], "threshold must be >", None),
    ("threshold-text", ["model.neuron_kwargs={threshold: abc}"], "threshold: expected float", None),
    ("decay-out-of-range", ["model.neuron_kwargs={decay: 1.5}"], "decay must lie in [0, 1]", None),
    (
        "neuron-kwargs-ann",
        ["model.spiking=false", "model.neuron_kwargs={decay: 0.5}"],
        "model.spiking is false",
        None,
    ),
    (
        "method-options-not-mapping",
        [*TEACHER, "distill.options={kd: 5}"],
        "distill.options.kd: expected a mapping, got 5",
        None,
    ),
    (
        "method-option-text",
        [*TEACHER, "distill.options={kd: {tau: abc}}"],
        "distill.options.kd.tau: expected float",
        None,
    ),
    ("method-option-range", [*TEACHER, "distill.options={kd: {tau: 0}}"], "tau must be > 0", None),
    (
        "method-weight-negative",
        [*TEACHER, "distill.options={kd: {weight: -1}}"],
        "must be >= 0 (a negative weight would maximise",
        None,
    ),
    (
        "model-option-in-channels",
        ["model.options={in_channels: 3}"],
        "dataset gives the input",
        None,
    ),
    ("method-empty-name", [*TEACHER[1:], "distill.method=kd+"], "has an empty method name", None),
    (
        "sastc-batch-size-option",
        [*TEACHER[1:], "distill.method=sastc", "distill.options={sastc: {batch_size: 32}}"],
        "distill.options.sastc.batch_size: data.batch_size per device, set by the trainer",
        None,
    ),
    (
        "model-too-deep-for-the-data",
        ["model.name=vgg11", "model.options={}"],
        "model 'vgg11' cannot run on this data (a batch of shape (64, 1, 8, 8))",
        None,
    ),
    ("method-not-selected", [*TEACHER, "distill.options={sastc: {}}"], "is not in distill", None),
    (
        "method-key-misspelt",
        [*TEACHER, "distill.options={kdd: {tau: 2}}"],
        "method 'kdd' is not in distill.method='kd'; did you mean distill.options.kd?",
        None,
    ),
    (
        "teacher-options-text",
        [*TEACHER, "teacher.options={width: x}"],
        "teacher.options.width",
        None,
    ),
    (
        "teacher-class-count",
        [*TEACHER, "teacher.options={num_classes: 100}"],
        "dataset gives",
        None,
    ),
    ("data-option-unknown", ["data.options={frames: 4}"], "data.options.frames' of dataset", None),
    # checkpoints and data the run starts from
    (
        "teacher-other-architecture",
        [*TEACHER, "teacher.checkpoint={files}/resnet8.pt"],
        "checkpoint does not fit the architecture: missing",
        None,
    ),
    (
        "teacher-other-class-count",
        [*TEACHER, "teacher.checkpoint={files}/convnet3_100.pt"],
        "head.fc.weight: checkpoint (100, 32) vs model (10, 32)",
        None,
    ),
    (
        "truncated-checkpoint",
        [*TEACHER, "teacher.checkpoint={files}/truncated.pt"],
        "corrupt",
        None,
    ),
    (
        "missing-checkpoint",
        [*TEACHER, "teacher.checkpoint={files}/nope.pt"],
        "does not exist",
        None,
    ),
    (
        "missing-data-root",
        ["data.name=mnist", "--data-dir", "{files}/none"],
        "MNIST not found",
        None,
    ),
    ("bad-idx-magic", ["data.name=mnist", "--data-dir", "{files}/badmagic"], "magic", None),
    ("truncated-gzip", ["data.name=mnist", "--data-dir", "{files}/truncgz"], "gzip", None),
    (
        "unknown-tap",
        [*TEACHER[1:], "distill.method=fitnet", "distill.options={fitnet: {student_tap: nope}}"],
        "no module 'nope' to tap",
        None,
    ),
    (
        "sastc-unknown-regressor",
        [*TEACHER[1:], "distill.method=sastc", "distill.options={sastc: {regressor: conv5x5}}"],
        "distill.options.sastc.regressor: expected one of 'conv3x3', 'conv1x1', got 'conv5x5'",
        None,
    ),
    (
        "sastc-warmup-text",
        [*TEACHER[1:], "distill.method=sastc", "distill.options={sastc: {warmup_epochs: soon}}"],
        "distill.options.sastc.warmup_epochs: expected int",
        None,
    ),
    (
        "sastc-batch-too-small",
        [*TEACHER[1:], "distill.method=sastc", "data.batch_size=2"],
        "batch size too small for SASTC",
        None,
    ),
    # the run folder: never overwritten, never shared
    ("out-holds-a-run", [], "already holds a run", _copy_run()),
    ("out-holds-results-only", [], "already holds a run (best.pt", _copy_run("last.pt")),
    (
        "out-holds-a-start-only",
        [],
        "holds the start of a run that saved nothing (see its log.txt) (config.yaml, log.txt); "
        "pass --resume to start it over",
        _copy_run("last.pt", "best.pt", "metrics.json", "metrics.csv"),
    ),
    ("out-holds-the-config", ["--config-in-out"], "write over its own config", None),
    ("out-holds-the-base-config", ["--config-beside"], "is the folder of the config", None),
    ("resume-without-last-but-results", ["--resume"], "cannot resume", _copy_run("last.pt")),
    ("resume-corrupt-last", ["--resume"], "corrupt", _write("last.pt", "not a zip")),
    (
        "resume-last-without-state",
        ["--resume"],
        "field 'state' should be dict, missing",
        _copy_run(change=lambda c: c.pop("state")),
    ),
    (
        "resume-last-wrong-type",
        ["--resume"],
        "field 'epoch' should be int, str",
        _copy_run(change=lambda c: c["state"].update(epoch="1")),
    ),
    (
        "resume-last-no-schema",
        ["--resume"],
        "not a spikedistill run checkpoint",
        _copy_run(change=lambda c: c.pop("schema_version")),
    ),
    (
        "resume-force-other-width",
        ["model.options={width: 16}", "--resume", "--force"],
        "run checkpoint does not fit the architecture",
        _copy_run(),
    ),
    (
        "resume-force-another-objective",
        [*TEACHER, "--resume", "--force"],
        "the run's objective (its methods') checkpoint does not fit the architecture: missing",
        _copy_run(),
    ),
    (
        "resume-changed-config",
        ["optim.lr=0.5", "--resume"],
        "differs from the run's in optim.lr (0.1 -> 0.5); resume with the same config",
        _copy_run(),
    ),
    ("resume-own-config", ["--config-in-out", "--resume"], "write over its own config", None),
    ("out-is-a-file", [], "is a file, not a folder", lambda out, files: out.write_text("x")),
    (
        "resume-last-negative-epoch",
        ["--resume"],
        "negative epoch",
        _copy_run(change=lambda c: c["state"].update(epoch=-3)),
    ),
    (
        "resume-last-history-not-rows",
        ["--resume"],
        "history entry that is not a mapping",
        _copy_run(change=lambda c: c["state"].update(history=[1, 2])),
    ),
    (
        "resume-step-beyond-the-epoch",
        ["--resume"],
        "at step 1000000 of an epoch, which has",
        _copy_run(change=lambda c: c["state"].update(step_in_epoch=10**6)),
    ),
    ("run-folder-locked", [], f"is in use by process {os.getpid()}", _lock_held),
]


def _mnist_folder(folder, corrupt):
    folder.mkdir()
    images, labels = np.zeros((4, 28, 28), np.uint8), np.arange(4, dtype=np.uint8)
    for split in ("train", "t10k"):
        (folder / f"{split}-images-idx3-ubyte").write_bytes(idx_bytes(images))
        (folder / f"{split}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    corrupt(folder / "train-images-idx3-ubyte")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    torch.save(build_model("resnet8", 10).state_dict(), root / "resnet8.pt")
    torch.save(build_model("convnet3", 100, width=8).state_dict(), root / "convnet3_100.pt")
    good = root / "good.pt"
    torch.save(build_model("convnet3", 10, width=8).state_dict(), good)
    (root / "truncated.pt").write_bytes(good.read_bytes()[:300])

    def bad_magic(path):
        path.write_bytes(b"\x12\x34" + path.read_bytes()[2:])

    def truncated_gzip(path):
        (path.parent / (path.name + ".gz")).write_bytes(gzip.compress(path.read_bytes())[:-20])
        path.unlink()

    _mnist_folder(root / "badmagic", bad_magic)
    _mnist_folder(root / "truncgz", truncated_gzip)
    os.mkfifo(root / "fifo")
    chain = root / "chain"
    chain.mkdir()
    (chain / "c0.yaml").write_text(BASE)
    for i in range(1, 1200):
        (chain / f"c{i}.yaml").write_text(f"base: c{i - 1}.yaml\n")
    config = root / "tiny.yaml"
    config.write_text(BASE)
    assert main(["train", str(config), "--out", str(root / "run")]) == 0
    return root


def _argv(args, files, tmp_path):
    """The train command line of a row, and the folders that must not change."""
    config, out = tmp_path / "tiny.yaml", tmp_path / "run"
    config.write_text(BASE)
    args = [a.replace("{files}", str(files)) for a in args]
    if args[:1] == ["--config-text"]:
        config.write_text(args[1])
        args = args[2:]
    elif args[:1] == ["--config-file"]:
        config, args = args[1], args[2:]
    elif args[:1] in (["--config-in-out"], ["--config-beside"]):  # the run's folder holds it
        out.mkdir()
        (out / "config.yaml").write_text(BASE)
        config = out / "config.yaml"
        if args[0] == "--config-beside":  # a config based on the user's config.yaml there
            config = out / "exp.yaml"
            config.write_text("base: config.yaml\n")
        args = args[1:]
    flags = next((i for i, a in enumerate(args) if a.startswith("--")), len(args))
    return ["train", str(config), *args[:flags], "--out", str(out), *args[flags:]], out


@pytest.mark.parametrize(
    ("args", "message", "prepare"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_bad_input_gives_one_line_exit_2_and_changes_nothing(
    args, message, prepare, files, tmp_path, capsys
):
    argv, out = _argv(args, files, tmp_path)
    if prepare is not None:
        prepare(out, files)
    expect_one_line_error(argv, message, capsys, watch=[tmp_path, files / "run"])


def test_debug_flag_shows_the_traceback(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(BASE)
    with pytest.raises(Exception, match=r"model\.T must be >= 1"):
        main(["--debug", "train", str(config), "model.T=0", "--out", str(tmp_path / "run")])
