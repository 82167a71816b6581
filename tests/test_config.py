import typing

import pytest

from spikedistill.engine.config import ExperimentConfig, config_from_dict, load_config
from spikedistill.engine.schema import apply_overrides
from spikedistill.errors import ConfigError
from spikedistill.typed import coerce


def write(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return str(path)


def test_yaml_and_overrides_are_typed(tmp_path):
    path = write(tmp_path, "model:\n  name: resnet8\n  spiking: true\ntrain:\n  epochs: 3\n")
    cfg = load_config(path, ["model.T=2", "optim.lr=1", "data.augment=[crop, flip]"])
    assert (cfg.model.name, cfg.model.spiking, cfg.model.T) == ("resnet8", True, 2)
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.data.augment == ["crop", "flip"] and cfg.train.epochs == 3


def test_roundtrip_through_dict():
    cfg = load_config(None, ["model.options.width=8", "sched.milestones=[2, 4]"])
    assert config_from_dict(cfg.to_dict()) == cfg
    assert cfg.model.options == {"width": 8}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.epochz=1"], "did you mean 'train.epochs'"),
        (["trian.epochs=1"], "did you mean 'train'"),
        (["model.T=0"], "model.T must be >= 1"),
        (["model.T=two"], "model.T: expected int"),
        (["model.spiking=1"], "model.spiking: expected bool"),
        (["optim.lr=-0.1"], "optim.lr must be > 0"),
        (["optim.name=adam"], "sgd or adamw"),
        (["data.label_noise=1.0"], r"label_noise must lie in \[0, 1\)"),
        (["data.label_noise=-0.1"], "label_noise"),
        (["data.batch_size=0"], "batch_size"),
        (["sched.name=linear"], "sched.name"),
        (["train.amp=fp8"], "train.amp"),
        (["train.neuron_backend=cuda"], "neuron_backend must be one of auto, compile, cpp, "),
        (["model=resnet8"], "model: expected a mapping"),
        (["epochs"], "key=value"),
    ],
)
def test_bad_values_raise_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_invalid_yaml_names_the_file(tmp_path):
    path = write(tmp_path, "model: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML in"):
        load_config(path)
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))


def test_yaml_is_loaded_safely(tmp_path):
    path = write(tmp_path, "name: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)


def test_override_creates_nested_sections():
    data = apply_overrides({}, ["a.b.c=3", "a.d=x"])
    assert data == {"a": {"b": {"c": 3}, "d": "x"}}


def test_defaults_are_valid():
    assert load_config() == ExperimentConfig()


def test_base_recipe_is_deep_merged(tmp_path):
    recipe = "optim: {lr: 0.01, momentum: 0.9}\ntrain: {epochs: 240}\n"
    (tmp_path / "recipe.yaml").write_text(recipe)
    (tmp_path / "pair.yaml").write_text("base: recipe.yaml\noptim: {lr: 0.02}\nmodel: {T: 3}\n")
    cfg = load_config(str(tmp_path / "pair.yaml"))
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.train.epochs, cfg.model.T) == (0.02, 0.9, 240, 3)
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(str(tmp_path / "loop.yaml"))


@pytest.mark.parametrize(
    ("annotation", "value", "expected"),
    [
        (tuple[int, int], [1, 2], (1, 2)),
        (tuple[int, int], [1, 2, 3], "p: expected 2 items, got [1, 2, 3]"),
        (tuple[int, float], [1, "x"], "p[1]: expected float, got 'x'"),
        (tuple[int, ...], [1, 2, 3], (1, 2, 3)),
        (dict[str, float], {"a": 1}, {"a": 1.0}),
        (dict[str, float], {"a": "x"}, "p.a: expected float, got 'x'"),
        (dict[str, int], {1: 2}, "p key 1: expected str, got 1"),
        (typing.Any, object, object),  # an option without annotation
    ],
)
def test_option_annotations_check_every_item(annotation, value, expected):
    """What an own method's or dataset's option may be annotated with: a fixed-size tuple
    checks its length and each item's type, a dict its keys and values."""
    if isinstance(expected, str):
        with pytest.raises(ConfigError) as info:
            coerce(value, annotation, "p")
        assert str(info.value) == expected
    else:
        assert coerce(value, annotation, "p") == expected
