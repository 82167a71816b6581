"""Your own datasets by name, ``data.name: package.module:callable``: built, checked, trained
from the CLI and rebuilt by ``eval``, like the registered ones."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from spikedistill.cli import main
from spikedistill.data import build_datasets, dataset_options, make_loader
from spikedistill.engine.config import load_config
from spikedistill.engine.trainer import Trainer
from spikedistill.errors import ConfigError, DataError

OWN_DATA = '''
import torch
from torch.utils.data import Dataset
from spikedistill.data import DatasetInfo, ImageTensorDataset

INFO = DatasetInfo(num_classes=3, in_channels=1, image_size=(8, 8), mean=(0.4,), std=(0.3,))
calls = []


def images(n, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=g)
    x = torch.randint(0, 80, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    for i, c in enumerate(labels.tolist()):
        x[i, 0, 2 * c : 2 * c + 3] += 170
    return x, labels


class Floats(Dataset):
    """A plain Dataset: float images in [0, 1] and int labels, one sample at a time."""

    def __init__(self, n, seed):
        self.x, self.y = images(n, seed)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i].float() / 255, int(self.y[i])


def generic(root, *, seed=0, n_train: int = 64):
    calls.append({"root": root, "seed": seed, "n_train": n_train})
    return Floats(n_train, 1), Floats(32, 2), INFO


class Targets(Floats):
    """Floats that name their labels up front, as torchvision's datasets do."""

    @property
    def targets(self):
        return self.y.tolist()


def with_targets(n_train: int = 64):
    return Targets(n_train, 1), Floats(32, 2), INFO


def in_memory(n_train: int = 64):
    return ImageTensorDataset(*images(n_train, 1)), ImageTensorDataset(*images(32, 2)), INFO


def anything(**options):
    calls.append(options)
    return in_memory()


class Bad(Floats):
    def __init__(self, sample):
        super().__init__(4, 0)
        self.sample = sample

    def __getitem__(self, i):
        return self.sample


class Pil:
    mode = "L"


def bad(kind):
    x, y = torch.full((1, 8, 8), 0.5), 1
    sample = {
        "pil": (Pil(), y), "uint8": ((x * 255).to(torch.uint8), y), "shape": (x[0], y),
        "normalised": (x - 0.6, y), "label": (x, 3), "float-label": (x, 1.0), "single": x,
    }[kind]
    return Floats(4, 0), Bad(sample), INFO


def not_a_triple():
    return Floats(4, 0), Floats(4, 0)


def missing_file():
    return Floats(4, 0), Odd(4, 0, "raise", at=0), INFO


def broken():
    return undefined_name  # noqa: F821


def in_255_units():
    return Floats(4, 0), Floats(4, 0), DatasetInfo(3, 1, (8, 8), (76.5,), (76.5,))


def dict_info():
    return Floats(4, 0), Floats(4, 0), {"num_classes": 3}


class Odd(Floats):
    """Floats whose sample ``at`` is odd: a NaN (frames), a label beyond the classes, or an
    exception of the dataset's own code."""

    def __init__(self, n, seed, kind, at=5, steps=None):
        super().__init__(n, seed)
        self.kind, self.at, self.steps = kind, at, steps

    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        if self.steps:
            x = x.expand(self.steps, *x.shape).clone()  # event frames [T, C, H, W]
        if i == self.at and self.kind == "nan":
            x[-1, 0, 0] = float("nan")
        if i == self.at and self.kind == "label":
            y = 7
        if i == self.at and self.kind == "raise":
            raise KeyError(f"no sample {i}")
        return x, y


def odd(kind: str = "nan", steps: int = 0):
    info = INFO if not steps else DatasetInfo(3, 1, (8, 8), (0.4,), (0.3,), time_steps=steps)
    return Odd(64, 1, kind, steps=steps), Odd(32, 2, "none", steps=steps), info


def iterable():
    return Floats(4, 0), iter([(torch.zeros(1, 8, 8), 0)]), INFO
'''


def test_an_error_while_importing_your_module_is_named_as_yours(tmp_path, monkeypatch):
    (tmp_path / "raising_module.py").write_text("raise ValueError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as info:
        build_datasets("raising_module:build")
    assert str(info.value) == (
        "dataset 'raising_module:build': importing 'raising_module' raised ValueError: boom at "
        "import"
    )


@pytest.fixture
def own_data(tmp_path, monkeypatch):
    (tmp_path / "own_data.py").write_text(textwrap.dedent(OWN_DATA))
    monkeypatch.syspath_prepend(str(tmp_path))
    import own_data

    yield own_data
    sys.modules.pop("own_data", None)  # the next test's module is another file


SMALL = ["model.name=convnet3", "model.options.width=4", "model.spiking=true", "model.T=2",
         "data.batch_size=16", "train.epochs=2", "train.device=cpu"]  # fmt: skip


def test_the_builder_gets_what_its_signature_takes(own_data, tmp_path):
    train, test, info = build_datasets("own_data:generic", tmp_path, seed=5, n_train=48)
    assert own_data.calls == [{"root": tmp_path, "seed": 5, "n_train": 48}]  # no download
    assert (len(train), len(test), info) == (48, 32, own_data.INFO)
    build_datasets("own_data:anything", tmp_path, seed=2, width=3)  # **options: all of it
    assert own_data.calls[-1] == {"root": tmp_path, "download": False, "seed": 2, "width": 3}
    assert dataset_options("own_data:generic") == {"n_train": 64}


def test_its_batches_are_its_samples_normalised_with_its_info(own_data):
    train, _, info = build_datasets("own_data:generic")
    loader = make_loader(train, 16, train=True, info=info, seed=3)
    x, y = next(iter(loader))
    order = loader.indices()[:16]
    expected = torch.stack([train[int(i)][0] for i in order]).sub(0.4).div(0.3)
    torch.testing.assert_close(x, expected)
    assert y.tolist() == [train[int(i)][1] for i in order]


def test_a_plain_dataset_trains_as_the_same_images_held_in_memory(own_data, tmp_path):
    """The ``DataLoader`` path (one sample at a time) and the in-memory one give the same
    batches, so the same run: every number of the history is equal."""
    runs = {}
    for builder in ("generic", "in_memory"):
        cfg = load_config(None, [*SMALL, f"data.name=own_data:{builder}", "train.epochs=4"])
        history = Trainer(cfg, tmp_path / builder).fit()["history"]
        keys = ("train_loss", "train_top1", "test_loss", "test_top1")
        runs[builder] = [row[k] for row in history for k in keys]
    assert runs["generic"] == pytest.approx(runs["in_memory"], rel=1e-6)
    assert runs["generic"][-1] > 50  # last test top-1: it learns the three bands (chance 33)


def test_the_cli_trains_on_it_and_eval_rebuilds_it(own_data, tmp_path, capsys):
    run = tmp_path / "run"
    config = tmp_path / "exp.yaml"
    config.write_text("data: {name: 'own_data:generic', options: {n_train: 48}}\n")
    assert main(["train", str(config), *SMALL, "--out", str(run)]) == 0
    last = json.loads((run / "metrics.json").read_text())["history"][-1]
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run), "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["top1"] == pytest.approx(last["test_top1"])
    assert own_data.calls[-1]["n_train"] == 48  # eval rebuilt it with the run's options


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("pil", r"the image is not a tensor but a Pil \(torchvision: transform=transforms\.ToT"),
        ("uint8", r"the image is torch.uint8; give floats in \[0, 1\]"),
        ("shape", r"the image is \[8, 8\]; info says \[1, 8, 8\] \[C, H, W\]"),
        ("normalised", r"span \[-0.1, -0.1\], not \[0, 1\]; the loader normalises"),
        ("label", r"label 3 is outside \[0, 3\)"),
        ("float-label", "the label is 1.0, not an integer class index"),
        ("single", "test sample 0 is a Tensor, not an \\(image, label\\) pair"),
    ],
)
def test_a_sample_of_the_wrong_form_is_named_before_training(own_data, kind, fragment):
    with pytest.raises(DataError, match=fragment) as info:
        build_datasets("own_data:bad", kind=kind)
    assert str(info.value).startswith("dataset 'own_data:bad': test sample 0")


@pytest.mark.parametrize(
    ("name", "options", "error", "fragment"),
    [
        ("own_data:generic", {"n_trian": 3}, ConfigError,
         "unknown option 'data.options.n_trian' of dataset 'own_data:generic'; did you mean "
         "'data.options.n_train'"),
        ("own_data:generic", {"n_train": "many"}, ConfigError, "data.options.n_train"),
        ("own_data:not_a_triple", {}, ConfigError, "returned a tuple of 2; it must return "
         r"\(train, test, info\)"),
        ("own_data:dict_info", {}, ConfigError, r"returned a \(train, test, info\) whose info "
         "is a dict"),
        ("own_data:nothing", {}, ConfigError, "'own_data' has no attribute 'nothing'"),
        ("own_data:in_255_units", {}, ConfigError, r"mean \(76.5,\) and std \(76.5,\) are for "
         r"inputs scaled to \[0, 1\].*in 0-255 units\? divide them by 255"),
        ("own_data:missing_file", {}, DataError, "dataset 'own_data:missing_file': test sample "
         "0 could not be read: KeyError: 'no sample 0'"),
        ("own_data:broken", {}, DataError, "dataset 'own_data:broken': your builder raised "
         "NameError: name 'undefined_name' is not defined"),
        ("own_data:iterable", {}, ConfigError, "returned a list_iterator as its test set; a "
         "map-style Dataset is needed"),
        ("no_such_module:build", {}, ConfigError, "dataset 'no_such_module:build': cannot "
         "import 'no_such_module'"),
    ],
)  # fmt: skip
def test_a_builder_that_does_not_fit_is_one_clear_error(own_data, name, options, error, fragment):
    with pytest.raises(error, match=fragment):
        build_datasets(name, **options)


def test_a_subset_takes_the_labels_a_dataset_names(own_data):
    """A dataset with ``targets`` gets the same class-balanced subset and noisy labels as the
    same images in memory (from the same seed); one without is refused."""
    kept = {}
    for builder in ("in_memory", "with_targets"):
        train, _, _ = build_datasets(f"own_data:{builder}", train_subset=30, label_noise=0.2)
        kept[builder] = [(train[i][0], train[i][1]) for i in range(len(train))]
    assert len(kept["in_memory"]) == len(kept["with_targets"]) == 30
    for (x, y), (x2, y2) in zip(kept["in_memory"], kept["with_targets"], strict=True):
        assert torch.equal(x, x2) and y == y2
    clean, _, _ = build_datasets("own_data:with_targets", train_subset=30)
    assert 0 < sum(kept["with_targets"][i][1] != clean[i][1] for i in range(30)) < 30
    with pytest.raises(ConfigError, match="gives a Floats with neither targets nor labels"):
        build_datasets("own_data:generic", train_subset=30)


def test_a_config_names_it_and_leaves_its_options_to_it():
    """A run's config loads where its module does not import (``report`` of a run elsewhere);
    the builder checks its options when it is called."""
    cfg = load_config(None, ["data.name=gone_module:build", "data.options.anything=1"])
    assert cfg.data.name == "gone_module:build" and cfg.data.options == {"anything": 1}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["data.options.steps=2"], "non-finite value (NaN or inf) in training sample 5 of "
         "own_data:odd"),  # event frames [T, B, ...]: the sample, not a time step
        (["data.options.kind=label"], "sample 5 has label 7, outside the 3 classes [0, 3)"),
    ],
)  # fmt: skip
def test_a_sample_after_the_first_is_named_when_it_is_read(own_data, tmp_path, options, message):
    cfg = load_config(None, [*SMALL, "data.name=own_data:odd", *options])
    with pytest.raises(DataError) as info:
        Trainer(cfg, tmp_path / "run").fit()
    assert str(info.value).startswith(message)


def test_an_error_of_the_datasets_code_in_a_worker_ends_the_process(own_data, tmp_path):
    """Loader workers absorb one SIGTERM (a scheduler's, to the process group); at exit
    multiprocessing sends them just one, so a loader left alive by an error's traceback hung
    the process after its error line."""
    config = tmp_path / "exp.yaml"
    config.write_text("data: {name: 'own_data:odd', num_workers: 2, options: {kind: raise}}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    argv = [sys.executable, "-m", "spikedistill.cli", "train", str(config), *SMALL]
    proc = subprocess.run(
        [*argv, "--out", str(tmp_path / "run")], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]  # your data's mistake, named as such
    assert "your dataset's Odd failed to give training sample 5: KeyError: 'no sample 5'" in (
        proc.stderr
    )


def test_frames_and_steps_that_differ_name_the_options_that_exist(own_data, tmp_path):
    from spikedistill.engine.setup import build_student

    four = [*SMALL[:3], "model.T=4", *SMALL[4:]]
    with pytest.raises(ConfigError) as info:
        Trainer(load_config(None, [*four, "data.name=own_data:odd", "data.options.steps=2"]),
                tmp_path / "run")  # fmt: skip
    assert str(info.value).endswith("but model.T=4; set model.T=2")  # no data.options.frames
    dvs = load_config(None, [*four, "data.name=cifar10dvs"])
    with pytest.raises(ConfigError, match=r"set model.T=10 \(or data.options.frames=4\)"):
        build_student(dvs, 10, 2, time_steps=10)
