"""The Python API: the README's snippet as written, ``train`` on own modules and loaders, and
``load_model`` on run directories and checkpoints."""

import inspect
import re
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import spikedistill as sd
from spikedistill.errors import CheckpointError, ConfigError

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_snippet(part: str = "### From Python") -> str:
    """The first Python block of a part of the README."""
    text = README.read_text().split(part, 1)[1]
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def test_the_readme_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_snippet(), "README.md", "exec"), {})
    best, shape = capsys.readouterr().out.split("\n")[-2].split(" ", 1)
    assert 0 <= float(best) <= 100 and shape == "torch.Size([4, 10])"
    assert (tmp_path / "runs/python-kd/best.pt").is_file()


def test_the_readme_spikingjelly_snippet_continues_the_first(tmp_path, monkeypatch):
    pytest.importorskip("spikingjelly")
    monkeypatch.chdir(tmp_path)
    code = readme_snippet() + readme_snippet("### Bring your own SNN")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    x = scope["x"][:3]
    torch.testing.assert_close(scope["trained"](x), scope["student"].eval()(x))


def loaders(n=96, classes=4, shape=(1, 12, 12), seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)
    train = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=16, shuffle=False)
    return train, DataLoader(TensorDataset(x[64:], y[64:]), batch_size=32), x


class OwnAnn(nn.Module):
    def __init__(self, num_classes=4, in_channels=1):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))

    def forward(self, x):
        return self.fc(self.conv(x))


def test_train_records_the_run_and_load_model_gives_the_trained_student(tmp_path):
    train, test, x = loaders()
    student = sd.build_model("convnet3", num_classes=4, in_channels=1, spiking=True, T=2)
    teacher = OwnAnn().train()
    teacher.conv.eval()  # a module of another mode: kept too
    summary = sd.train(student, train, test, teacher=teacher, method="kd+fitnet",
                       options={"fitnet": {"teacher_tap": "conv"}}, out=tmp_path / "run",
                       settings={"train.epochs": 2, "optim.lr": 0.05})  # fmt: skip
    assert summary["epochs"] == 2
    assert teacher.training and not teacher.conv.training  # frozen only while training
    assert all(p.requires_grad for p in teacher.parameters())
    cfg = (tmp_path / "run/config.yaml").read_text()
    assert "name: convnet3" in cfg and "batch_size: 16" in cfg and "name: python" in cfg
    student.eval()
    for source in (tmp_path / "run", tmp_path / "run/last.pt"):
        model = sd.load_model(source)
        assert not model.training and model.data_info.num_classes == 4
    torch.testing.assert_close(sd.load_model(tmp_path / "run/last.pt")(x[:5]), student(x[:5]))


def test_own_student_classes_are_rebuilt_by_their_class_path(tmp_path):
    train, test, x = loaders()
    student = OwnAnn()
    sd.train(student, train, test, method="none", out=tmp_path / "run",
             settings={"train.epochs": 1})  # fmt: skip
    assert f"name: {__name__}:OwnAnn" in (tmp_path / "run/config.yaml").read_text()
    model = sd.load_model(tmp_path / "run")
    student.eval()
    torch.testing.assert_close(model(x[:3]), student(x[:3]))


def test_resume_continues_a_python_run(tmp_path):
    train, test, _ = loaders()
    settings = {"train.epochs": 1, "train.seed": 3}
    sd.train(OwnAnn(), train, test, method="none", out=tmp_path / "run", settings=settings)
    settings["train.epochs"] = 2
    with pytest.raises(sd.SpikeDistillError, match="holds a run"):
        sd.train(OwnAnn(), train, test, method="none", out=tmp_path / "run", settings=settings)
    with pytest.raises(ConfigError, match=r"differs from the run.s in train\.epochs"):
        sd.train(OwnAnn(), train, test, method="none", out=tmp_path / "run",
                 settings=settings, resume=True)  # fmt: skip
    summary = sd.train(OwnAnn(), train, test, method="none", out=tmp_path / "run",
                       settings=settings, resume=True, force=True)  # fmt: skip
    assert [row["epoch"] for row in summary["history"]] == [1, 2]


def test_without_a_teacher_the_method_is_none_and_own_classes_warn_when_not_rebuildable(
    tmp_path,
):
    class Local(OwnAnn):  # defined here: its class path cannot be imported back
        pass

    train, test, x = loaders()
    student = Local()
    with pytest.warns(UserWarning, match=r"load_model\(run, model=") as shown:
        line = inspect.currentframe().f_lineno + 1
        summary = sd.train(student, train, test, out=tmp_path / "run",
                           settings={"train.epochs": 1})  # fmt: skip
    (warned,) = [w for w in shown if "load_model" in str(w.message)]
    assert (warned.filename, warned.lineno) == (__file__, line)  # the user's call, not ours
    assert set(summary["history"][0]) >= {"train_ce"} and "train_kd" not in summary["history"][0]
    with pytest.raises(
        ConfigError, match=r"with a new instance of it: spikedistill.load_model\(run, model="
    ):
        sd.load_model(tmp_path / "run")
    model = sd.load_model(tmp_path / "run", model=Local())
    torch.testing.assert_close(model(x[:2]), student.eval()(x[:2]))


def test_run_folder_messages_name_the_python_arguments(tmp_path):
    train, test, _ = loaders()
    sd.train(OwnAnn(), train, test, out=tmp_path / "run", settings={"train.epochs": 1})
    with pytest.raises(sd.SpikeDistillError, match=r"pass resume=True to continue it"):
        sd.train(OwnAnn(), train, test, out=tmp_path / "run", settings={"train.epochs": 1})


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"method": "kd"}, "needs a teacher"),
        ({"settings": {"model.T": 4}}, "the modules and loaders you pass decide it"),
        ({"settings": {"train.stm_every": 1}}, "need a spikedistill dataset"),
        ({"settings": {"optim.lr": -1}}, "optim.lr must be > 0"),
    ],
)
def test_bad_train_calls_are_one_clear_error(tmp_path, kwargs, fragment):
    train, test, _ = loaders()
    with pytest.raises(ConfigError, match=fragment):
        sd.train(OwnAnn(), train, test, out=tmp_path / "run", **{"method": "none", **kwargs})
    assert not (tmp_path / "run").exists()


def test_load_model_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        sd.load_model(tmp_path / "nothing")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a spikedistill training checkpoint"):
        sd.load_model(tmp_path / "plain.pt")


def test_a_spikingjelly_student_trains_with_every_feature_method(tmp_path):
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import layer, neuron

    from spikedistill.interop.spikingjelly import as_student

    train, test, _ = loaders()
    net = nn.Sequential(
        layer.Conv2d(1, 8, 3, padding=1), layer.BatchNorm2d(8), neuron.LIFNode(),
        layer.AdaptiveAvgPool2d(1), layer.Flatten(), layer.Linear(8, 4),
    )  # fmt: skip
    student = as_student(net, T=2)
    teacher = sd.build_model("convnet3", num_classes=4, in_channels=1)
    summary = sd.train(student, train, test, teacher=teacher, out=tmp_path / "run",
                       method="kd+fitnet+sastc+samd+nld", settings={"train.epochs": 1})  # fmt: skip
    terms = summary["history"][0]
    assert all(terms[f"train_{m}"] > 0 for m in ("kd", "fitnet", "sastc", "samd", "nld"))


class StepNet(nn.Module):
    """snnTorch's way on 1 x 12 x 12 images: a loop over T, one ``snn.Leaky`` keeping its
    membrane; ``reset`` in forward, a ``T``, ``spiking`` declared, and what it ``returns``:
    as asked (per step or the mean), always the mean, always the steps, or snnTorch's
    ``(spikes, membrane)`` records."""

    def __init__(self, reset=True, returns="asked", T=2, spiking=True):
        super().__init__()
        snn = pytest.importorskip("snntorch")
        if T is not None:
            self.T = T
        self.reset, self.returns, self.spiking = reset, returns, spiking
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.lif = snn.Leaky(0.5, init_hidden=True)
        self.fc = nn.Linear(8, 4)

    def forward(self, x, per_step=False):
        from snntorch import utils

        if self.reset:
            utils.reset(self)
        steps = torch.stack([self.fc(self.lif(self.conv(x)).mean(dim=(2, 3))) for _ in range(2)])
        if self.returns == "records":
            return steps, steps
        stacked = self.returns == "steps" or (self.returns == "asked" and per_step)
        return steps if stacked else steps.mean(0)


@pytest.mark.parametrize(
    ("net", "fragment"),
    [
        (lambda: StepNet(reset=False), "reset it at the start of its forward"),
        (lambda: StepNet(T=None), "says spiking=True, so it needs T"),
        (lambda: StepNet(returns="mean"), "per_step=True) gives shape (16, 4) for 16 samples"),
        (lambda: StepNet(returns="steps"), "(x) gives shape (2, 2, 4) for 2 samples"),
        (lambda: StepNet(returns="records"), "returned a tuple of 2, not logits"),
        (lambda: StepNet(spiking=False), "holds spiking neurons (lif) but does not say"),
    ],
    ids=["state-kept", "no-T", "per-step-ignored", "steps-always", "records", "not-declared"],
)
def test_a_student_breaking_the_contract_is_told_how(tmp_path, net, fragment):
    train, test, _ = loaders()
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        sd.train(net(), train, test, teacher=OwnAnn(), method="kd", out=tmp_path / "run",
                 settings={"train.epochs": 1})  # fmt: skip
    sd.train(StepNet(), train, test, teacher=OwnAnn(), method="kd", out=tmp_path / "ok",
             settings={"train.epochs": 1})  # fmt: skip


def test_train_under_torchrun_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    for name, value in {
        "WORLD_SIZE": "2",
        "RANK": "1",
        "MASTER_ADDR": "x",
        "MASTER_PORT": "1",
    }.items():
        monkeypatch.setenv(name, value)
    train, test, _ = loaders()
    with pytest.raises(ConfigError, match=r"runs in one process.*torchrun -m spikedistill train"):
        sd.train(OwnAnn(), train, test, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
