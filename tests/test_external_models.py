"""Models from outside the zoo by name: ``torchvision:``, ``timm:``, ``package.module:callable``,
built by ``build_model`` and used as teachers and students by the trainer."""

import re
import textwrap

import pytest
import torch

from spikedistill import build_model
from spikedistill.engine.config import load_config
from spikedistill.errors import ConfigError
from spikedistill.models.external import build_external
from third_party import import_timm, import_torchvision

OWN_MODELS = '''
import torch
from torch import nn


def make_teacher(num_classes, in_channels, width=8):
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes),
    )


class Student(nn.Module):
    """An ANN student that is not a zoo model; it takes only what it names."""

    def __init__(self, num_classes, hidden=16):
        super().__init__()
        self.body = nn.Sequential(nn.LazyConv2d(hidden, 3, padding=1), nn.ReLU())
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.body(x)))


def not_a_module(num_classes):
    return "a string"
'''


@pytest.fixture
def own_models(tmp_path, monkeypatch):
    (tmp_path / "own_models.py").write_text(textwrap.dedent(OWN_MODELS))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "own_models"


def test_torchvision_names_build_torchvisions_own_model():
    torchvision = import_torchvision()
    model = build_model("torchvision:resnet18", num_classes=7, in_channels=3)
    reference = torchvision.models.resnet18(num_classes=7)
    reference.load_state_dict(model.state_dict())  # the same keys and shapes
    x = torch.randn(2, 3, 32, 32)
    model.eval(), reference.eval()
    torch.testing.assert_close(model(x), reference(x))


def test_timm_names_pass_the_input_channels():
    timm = import_timm()
    model = build_model("timm:resnet18", num_classes=5, in_channels=1)
    assert type(model) is type(timm.create_model("resnet18"))
    assert model.conv1.in_channels == 1 and model(torch.randn(2, 1, 32, 32)).shape == (2, 5)


def test_own_callables_get_the_arguments_they_take(own_models):
    teacher = build_model(f"{own_models}:make_teacher", num_classes=4, in_channels=2, width=6)
    assert teacher[0].in_channels == 2 and teacher[0].out_channels == 6
    student = build_model(f"{own_models}:Student", num_classes=4, in_channels=2, hidden=5)
    assert student(torch.randn(3, 2, 8, 8)).shape == (3, 4) and student.fc.in_features == 5


@pytest.mark.parametrize(
    ("name", "options", "fragment"),
    [
        ("own_models:missing", {}, "has no attribute 'missing'"),
        ("own_models:not_a_module", {}, "returned a str, not an nn.Module"),
        ("own_models:Student", {"depth": 3}, "rejected its options"),
        ("no_such_package.models:build", {}, "cannot import 'no_such_package.models'"),
        (":build", {}, "write package.module:callable"),
        ("torchvision:resnet18", {"in_channels": 1}, "takes 3-channel images"),
        ("torchvision:no_such_net", {}, "torchvision has no model 'no_such_net'"),
        ("timm:no_such_net", {}, "timm has no model 'no_such_net'"),
    ],
)
def test_bad_external_names_are_one_clear_error(own_models, name, options, fragment):
    if name.startswith("torchvision"):
        import_torchvision()
    if name.startswith("timm"):
        import_timm()
    with pytest.raises(ConfigError, match=fragment):
        build_model(name, num_classes=3, **options)


def test_a_torchvision_model_cannot_be_a_spiking_student():
    import_torchvision()
    with pytest.raises(ConfigError, match="is an ANN"):
        build_external("torchvision:resnet18", 10, 3, {}, spiking=True)


def test_configs_accept_external_names_and_leave_their_options_to_them(own_models):
    overrides = [f"model.name={own_models}:Student", "model.options.hidden=4",
                 f"teacher.name={own_models}:make_teacher", "distill.method=kd"]  # fmt: skip
    cfg = load_config(None, overrides)
    assert cfg.model.options == {"hidden": 4}
    with pytest.raises(ConfigError, match=r"model\.options\.num_classes"):
        load_config(None, [f"model.name={own_models}:Student", "model.options.num_classes=3"])


def test_training_distils_from_an_own_teacher_into_an_own_student(own_models, tmp_path):
    from spikedistill.engine.trainer import Trainer

    cfg = load_config(None, [
        "data.name=synthetic", "data.batch_size=16", "train.epochs=1", "train.device=cpu",
        f"model.name={own_models}:Student", f"teacher.name={own_models}:make_teacher",
        "distill.method=kd+fitnet", "distill.options.fitnet.student_tap=body",
        "distill.options.fitnet.teacher_tap='2'",
    ])  # fmt: skip
    with pytest.warns(UserWarning, match="untrained"):
        summary = Trainer(cfg, tmp_path / "run").fit()
    assert summary["epochs"] == 1 and torch.isfinite(torch.tensor(summary["last_top1"]))


def test_a_torchvision_teacher_distils_by_module_paths(tmp_path):
    """kd + fitnet + samd from ``torchvision:resnet18``: fitnet's default tap is its inferred
    last stage, samd's CAM layers are named by path (64 px: its layer4 map is 2x2)."""
    import_torchvision()
    from spikedistill.engine.trainer import Trainer

    cfg = load_config(None, [
        "data.name=synthetic", "data.options.n_train=32", "data.options.n_test=16",
        "data.options.shape=[3, 64, 64]", "data.batch_size=16", "train.epochs=1",
        "train.device=cpu", "model.name=resnet8",
        "model.spiking=true", "model.T=2", "teacher.name=torchvision:resnet18",
        "distill.method=kd+fitnet+samd", "distill.options.samd.teacher_tap=layer4",
        "distill.options.samd.teacher_fc=fc",
    ])  # fmt: skip
    with pytest.warns(UserWarning, match="untrained"):
        trainer = Trainer(cfg, tmp_path / "run")
    assert trainer.objective.methods["fitnet"].teacher_path == "layer4"
    row = trainer.fit()["history"][0]
    assert row["train_samd"] > 0 and row["train_fitnet"] > 0


@pytest.mark.parametrize(
    ("error", "fragment"),
    [
        (ModuleNotFoundError("No module named 'torchvision'", name="torchvision"),
         "need torchvision: pip install spikedistill[vision]"),
        (ModuleNotFoundError("No module named 'PIL'", name="PIL"),
         "torchvision does not import: No module named 'PIL'"),
        (RuntimeError("operator torchvision::nms does not exist"),
         "does not import with torch"),  # PyPI's CUDA-built wheel beside a CPU torch
    ],
    ids=["missing", "missing-dependency", "built-for-another-torch"],
)  # fmt: skip
def test_a_torchvision_that_does_not_import_names_the_fix(monkeypatch, error, fragment):
    from spikedistill.models import external

    def fail(name):
        raise error

    monkeypatch.setattr(external.importlib, "import_module", fail)
    with pytest.raises(ConfigError, match=re.escape(fragment)) as info:
        build_model("torchvision:resnet18", 10)
    if isinstance(error, RuntimeError):
        assert f"--index-url {external.CPU_WHEELS}" in str(info.value)
