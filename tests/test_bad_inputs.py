"""Every user mistake the CLI can meet: one line on stderr, exit status 2, nothing written.

Each row is (id, extra CLI arguments or overrides, a fragment the message must contain);
``{files}`` in an argument is replaced by a folder of prepared bad files.
"""

import gzip

import numpy as np
import pytest
import torch

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

ROWS = [
    ("invalid-yaml", ["--config-text", "model: {name: [convnet3"], "invalid YAML"),
    ("unknown-key", ["train.epochz=2"], "did you mean 'train.epochs'"),
    ("wrong-type", ["model.T=two"], "model.T: expected int"),
    ("T-below-1", ["model.T=0"], "model.T must be >= 1"),
    ("threshold-not-positive", ["model.neuron_kwargs={threshold: 0}"], "threshold must be > 0"),
    ("decay-out-of-range", ["model.neuron_kwargs={decay: 1.5}"], "decay must lie in [0, 1]"),
    ("negative-lr", ["optim.lr=-0.1"], "optim.lr must be > 0"),
    ("label-noise-1", ["data.label_noise=1.0"], "label_noise must lie in [0, 1)"),
    ("unknown-model", ["model.name=resnet99"], "Valid: convnet3"),
    ("unknown-method", ["distill.method=kdd"], "Did you mean 'kd'"),
    ("unknown-dataset", ["data.name=mnsit"], "Did you mean 'mnist'"),
    ("unknown-neuron-preset", ["model.neuron=tdbm"], "Valid: if, ratebp, tdbn"),
    ("fp16-on-cpu", ["train.amp=fp16"], "fp16 needs a GPU"),
    ("compile-with-rate-bp", ["train.backprop=rate", "train.compile=true"], "bptt only"),
    ("rate-stored-steps", ["train.rate_stored_steps=0"], "rate_stored_steps must be an integer"),
    ("unknown-neuron-backend", ["train.neuron_backend=cuda"], "neuron_backend must be one of"),
    (
        "teacher-class-count",
        [*TEACHER, "teacher.options={num_classes: 100}"],
        "dataset gives the number",
    ),
    (
        "teacher-other-architecture",
        [*TEACHER, "teacher.checkpoint={files}/resnet8.pt"],
        "checkpoint does not fit the architecture: missing",
    ),
    (
        "teacher-other-class-count",
        [*TEACHER, "teacher.checkpoint={files}/convnet3_100.pt"],
        "head.fc.weight: checkpoint (100, 32) vs model (10, 32)",
    ),
    ("truncated-checkpoint", [*TEACHER, "teacher.checkpoint={files}/truncated.pt"], "corrupt"),
    ("missing-checkpoint", [*TEACHER, "teacher.checkpoint={files}/nope.pt"], "does not exist"),
    ("missing-data-root", ["data.name=mnist", "--data-dir", "{files}/none"], "MNIST not found"),
    ("bad-idx-magic", ["data.name=mnist", "--data-dir", "{files}/badmagic"], "magic"),
    ("truncated-gzip", ["data.name=mnist", "--data-dir", "{files}/truncgz"], "gzip"),
    (
        "unknown-tap",
        [*TEACHER[1:], "distill.method=fitnet", "distill.options={fitnet: {student_tap: nope}}"],
        "no module 'nope' to tap",
    ),
    (
        "sastc-batch-too-small",
        [*TEACHER[1:], "distill.method=sastc", "data.batch_size=2"],
        "batch size too small for SASTC",
    ),
    ("resume-nothing", ["--resume-from", "{files}/truncated.pt"], "corrupt"),
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
    return root


@pytest.mark.parametrize(("args", "message"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_input_gives_one_line_exit_2_and_writes_nothing(args, message, files, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(BASE)
    args = [a.replace("{files}", str(files)) for a in args]
    if args[:1] == ["--config-text"]:
        config.write_text(args[1])
        args = []
    if args[:1] == ["--resume-from"]:  # a run folder whose last.pt is corrupt
        out = tmp_path / "run"
        out.mkdir()
        (out / "last.pt").write_bytes((files / "truncated.pt").read_bytes())
        before = (out / "last.pt").read_bytes()
        argv = ["train", str(config), "--out", str(out), "--resume"]
    else:
        out, before = tmp_path / "run", None
        flags = next((i for i, a in enumerate(args) if a.startswith("--")), len(args))
        argv = ["train", str(config), *args[:flags], "--out", str(out), *args[flags:]]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("spikedistill: error: "), err
    assert message in err
    assert "Traceback" not in err
    if before is None:
        assert not (out / "last.pt").exists()
    else:
        assert (out / "last.pt").read_bytes() == before


def test_debug_flag_shows_the_traceback(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(BASE)
    with pytest.raises(Exception, match=r"model\.T must be >= 1"):
        main(["--debug", "train", str(config), "model.T=0", "--out", str(tmp_path / "run")])
