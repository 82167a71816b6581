"""Your own distillation methods by name, ``distill.method: kd+package.module:Class``: the
README's example trains as written, its term is checked against ``kd``, and a run reads back
where the method's code does not import."""

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from spikedistill.cli import main
from spikedistill.distill import DistillMethod, register_method
from spikedistill.distill.objective import add_terms
from spikedistill.engine.config import load_config
from spikedistill.errors import ConfigError

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_method_module() -> str:
    """The Python block of the README's "Your own methods" section: ``my_methods.py``."""
    section = README.read_text(encoding="utf-8").split("### Your own methods", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def my_methods(tmp_path, monkeypatch):
    (tmp_path / "my_methods.py").write_text(readme_method_module())
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_methods"
    sys.modules.pop("my_methods", None)


TINY = ["data.name=digits", "data.batch_size=32", "train.epochs=1", "train.device=cpu",
        "model.name=convnet3", "model.options.width=4", "teacher.name=convnet3",
        "teacher.options.width=8", "distill.options.kd.tau=2",
        "distill.options.step_kd.tau=2"]  # fmt: skip


def _history(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())["history"][-1]


def test_the_readme_method_trains_beside_kd_and_equals_it_at_one_step(my_methods, tmp_path):
    """``step_kd`` is KD per time step, averaged: for an ANN (T=1) it is ``kd`` itself; for
    an SNN it is at least ``kd`` of the averaged logits (KL is convex in the logits)."""
    method = f"distill.method=kd+{my_methods}:StepKD"
    config = tmp_path / "exp.yaml"
    config.write_text("name: step-kd\n")
    rows = {}
    students = {"ann": ["model.spiking=false"], "snn": ["model.spiking=true", "model.T=3"]}
    for name, student in students.items():
        out = tmp_path / name
        assert main(["train", str(config), *TINY, *student, method, "--out", str(out)]) == 0
        rows[name] = _history(out)
    assert rows["ann"]["train_step_kd"] == pytest.approx(rows["ann"]["train_kd"], rel=1e-6)
    assert rows["snn"]["train_step_kd"] > rows["snn"]["train_kd"] * (1 + 1e-4)
    saved = (tmp_path / "snn" / "config.yaml").read_text()
    assert "kd+my_methods:StepKD" in saved and "step_kd:" in saved


def test_a_run_reads_back_where_its_method_does_not_import(my_methods, tmp_path, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text("name: step-kd\n")
    run = tmp_path / "run"
    argv = ["train", str(config), *TINY, "model.spiking=true", "model.T=2"]
    assert main([*argv, f"distill.method=kd+{my_methods}:StepKD", "--out", str(run)]) == 0
    sys.modules.pop(my_methods)
    sys.path.remove(str(tmp_path))  # as on another machine
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(_history(run)["test_top1"])
    assert main(["eval", "--checkpoint", str(run), "--stm"]) == 2  # needs the objective
    assert "distillation method 'my_methods:StepKD': cannot import 'my_methods'" in (
        capsys.readouterr().err
    )


class Returns(DistillMethod):
    """A method whose ``forward`` returns ``Returns.value``."""

    name = "returns"
    value = None

    def __init__(self, student: nn.Module, teacher: nn.Module) -> None:
        super().__init__()

    def forward(self, batch):
        return Returns.value


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (1.5, "method 'm' returned a float, not a dict of loss terms"),
        ({"m": 1.5}, "method 'm': its term 'm' is a float, not a scalar tensor"),
        ({"m": torch.ones(3)}, r"its term 'm' has shape \[3\]; reduce it to a scalar"),
        ({"ce": torch.tensor(1.0)}, "its term 'ce' is also the cross-entropy's; name it "
         r"otherwise \(m_ce\)"),
        ({"kd": torch.tensor(1.0)}, "its term 'kd' is also another method's"),
        ({"top1": torch.tensor(1.0)}, "its term 'top1' is also the trainer's"),
        ({"loss": torch.tensor(1.0)}, "its term 'loss' is also the trainer's"),
    ],
)  # fmt: skip
def test_terms_that_are_not_named_scalars_are_refused(value, fragment):
    terms = {"ce": torch.tensor(2.0), "kd": torch.tensor(3.0)}
    with pytest.raises(ConfigError, match=fragment):
        add_terms(terms, value, "m")
    assert list(terms) == ["ce", "kd"]  # nothing overwritten


def test_a_term_named_like_kd_stops_the_run_at_its_first_batch(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Returns, "value", {"kd": torch.tensor(1.0)})
    config = tmp_path / "exp.yaml"
    config.write_text("name: clash\n")
    method = f"distill.method=kd+{__name__}:Returns"
    assert main(["train", str(config), *TINY[:-1], method, "--out", str(tmp_path / "r")]) == 2
    assert "method 'returns': its term 'kd' is also another method's" in capsys.readouterr().err


class NamedKD(Returns):
    name = "kd"  # another method's


class Unnamed(Returns):
    name = ""


@pytest.mark.parametrize(
    ("method", "fragment"),
    [
        (f"kd+{__name__}:Returns.forward", "is not a DistillMethod subclass"),
        (f"{__name__}:add_terms", "is not a DistillMethod subclass"),
        ("no_such_module:Method", "cannot import 'no_such_module'"),
        ("kd+stepkd", r"unknown distillation method 'stepkd'.*your own method: name it as "
         "package.module:Class"),
        (f"kd+{__name__}:NamedKD", "names a method twice"),
    ],
)  # fmt: skip
def test_method_names_that_do_not_resolve_are_one_clear_error(method, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(None, ["teacher.name=convnet3", f"distill.method={method}"])


def test_own_options_are_checked_when_the_config_loads(my_methods):
    base = ["teacher.name=convnet3", f"distill.method=kd+{my_methods}:StepKD"]
    cfg = load_config(None, [*base, "distill.options.step_kd.tau=2"])
    assert cfg.distill.options == {"step_kd": {"tau": 2}}
    with pytest.raises(ConfigError, match=r"did you mean 'distill\.options\.step_kd\.tau'"):
        load_config(None, [*base, "distill.options.step_kd.tua=2"])
    with pytest.raises(ConfigError, match=r"distill\.options\.step_kd\.tau must be > 0"):
        load_config(None, [*base, "distill.options.step_kd.tau=0"])
    with pytest.raises(ConfigError, match=r"did you mean distill\.options\.step_kd"):
        load_config(None, [*base, "distill.options.stepkd.tau=2"])
    spaced = load_config(None, ["teacher.name=convnet3", "distill.method=kd + fitnet"])
    assert spaced.distill.method == "kd+fitnet"  # recorded as the names


def test_register_method_keeps_names_that_key_options_and_terms():
    with pytest.raises(ConfigError, match="the two must be the same"):
        register_method("other_name")(Returns)
    with pytest.raises(ConfigError, match="a method's name is a Python identifier"):
        register_method("a+b")(Unnamed)
    with pytest.raises(ConfigError, match=r"a method's name is a Python identifier .*not ''"):
        load_config(None, ["teacher.name=convnet3", f"distill.method={__name__}:Unnamed"])


class RawTaps(Returns):
    """A feature method that hands back its tap specs unresolved."""

    name = "raw_taps"
    specs: tuple = ()

    def teacher_taps(self):
        return list(RawTaps.specs)


@pytest.mark.parametrize("specs", [[-1], ["layer7"]])
def test_tap_specs_a_method_leaves_unresolved_are_named(specs, monkeypatch):
    from spikedistill import build_model
    from spikedistill.distill import DistillObjective, FrozenTeacher

    monkeypatch.setattr(RawTaps, "specs", tuple(specs))
    student = build_model("convnet3", 3, in_channels=1, spiking=True, T=2, width=4)
    teacher = FrozenTeacher(build_model("convnet3", 3, in_channels=1, width=4))
    with pytest.raises(ConfigError) as info:
        DistillObjective(student, teacher, [RawTaps(student, teacher.model)])
    assert str(info.value) == (
        f"method 'raw_taps': its teacher_taps() gives {specs[0]!r}, not a module path of the "
        "teacher (ConvNet3); resolve stage indices and paths in its __init__ with "
        "spikedistill.distill.resolve_taps(model, specs)"
    )


class NeedsAlpha(Returns):
    name = "needs_alpha"

    def __init__(self, student: nn.Module, teacher: nn.Module, alpha: float) -> None:
        super().__init__(student, teacher)


def test_a_method_is_called_as_a_config_calls_it():
    """Every option has a default (a config may omit it), and a Python call with a misspelt
    option gets the config's message."""
    with pytest.raises(ConfigError, match="its option 'alpha' has no default"):
        load_config(None, ["teacher.name=convnet3", f"distill.method={__name__}:NeedsAlpha"])
    with pytest.raises(ConfigError, match="its option 'alpha' has no default"):
        register_method("needs_alpha")(NeedsAlpha)
    from spikedistill.distill.kd import KD

    with pytest.raises(ConfigError) as info:
        KD(None, None, wieght=2.0)
    assert str(info.value) == (
        "unknown option 'wieght' of 'kd'; did you mean 'weight'? (valid here: tau, weight)"
    )


class KeepsStudent(Returns):
    name = "keeps_student"

    def __init__(self, student: nn.Module, teacher: nn.Module) -> None:
        super().__init__(student, teacher)
        self.student = student


def test_a_method_holding_the_student_is_refused():
    from spikedistill import build_model
    from spikedistill.distill import DistillObjective, FrozenTeacher

    student = build_model("convnet3", 3, in_channels=1, spiking=True, T=2, width=4)
    teacher = FrozenTeacher(build_model("convnet3", 3, in_channels=1, width=4))
    with pytest.raises(ConfigError, match="method 'keeps_student' holds the student as its "
                       "module 'student': it would be saved and optimised"):  # fmt: skip
        DistillObjective(student, teacher, [KeepsStudent(student, teacher.model)])


def test_config_schema_lists_an_own_methods_options(my_methods, capsys):
    assert main(["config", "schema", "--json", "--method", f"{my_methods}:StepKD"]) == 0
    keys = {k["key"]: k for k in json.loads(capsys.readouterr().out)}
    tau = keys["distill.options.step_kd.tau"]
    assert (tau["type"], tau["default"]) == ("float", 4.0)
    assert tau["meaning"] == "the softmax temperature (> 0)"
    assert "distill.options.kd.tau" in keys  # the package's own are still there
