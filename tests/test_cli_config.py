"""Usability of the command line (issue 26): ``--version`` and ``python -m spikedistill``;
``config show`` / ``config schema``; the recipes shipped in the package (``configs list``,
``configs show``, ``recipe:NAME``)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from bad_input import expect_one_line_error
from spikedistill import __version__
from spikedistill.cli import main
from spikedistill.cli.config_schema import config_keys, option_meanings
from spikedistill.distill.base import METHODS
from spikedistill.engine.config import ExperimentConfig, load_config
from spikedistill.engine.schema import RECIPES, recipe_names
from spikedistill.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PAIR = "cifar10/sastc_resnet19_from_wrn_28_4_t2"  # a SASTC pair file, on top of `base:`


def leaves(data: dict, prefix: str = "") -> set[str]:
    """The dotted keys of a config dict (free-form ``options`` dicts count as one key)."""
    keys = set()
    for key, value in data.items():
        if isinstance(value, dict) and key not in ("options", "neuron_kwargs"):
            keys |= leaves(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


# -- --version, python -m ---------------------------------------------------------------------
def python_m(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spikedistill", *args], capture_output=True, text=True, timeout=120
    )


def test_python_m_version_names_the_package_and_torch():
    done = python_m("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"spikedistill {__version__} (torch {torch.__version__})\n"


def test_python_m_runs_a_command_with_its_errors_on_one_line():
    done = python_m("config", "show", "recipe:mnist/teacher", "train.epochs=1")
    assert done.returncode == 0, done.stderr
    shown = yaml.safe_load(done.stdout)
    assert shown["name"] == "mnist-teacher" and shown["train"]["epochs"] == 1
    done = python_m("config", "show", "recipe:mnist/teacher", "optim.name=adam")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "optim.name must be sgd or adamw" in done.stderr


def test_version_in_process(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith(f"spikedistill {__version__} (torch ")


# -- config show ------------------------------------------------------------------------------
def test_config_show_resolves_base_and_overrides_with_every_default(capsys, tmp_path):
    overrides = ["train.epochs=3", "optim.lr=0.02"]
    assert main(["config", "show", f"recipe:{PAIR}", *overrides]) == 0
    text = capsys.readouterr().out
    shown = yaml.safe_load(text)
    expected = load_config(str(RECIPES / f"{PAIR}.yaml"), overrides).to_dict()
    assert shown == expected
    assert leaves(shown) == leaves(ExperimentConfig().to_dict())  # every key, defaults too
    assert shown["distill"]["method"] != "none"  # from the base recipe
    assert shown["train"]["epochs"] == 3 and shown["optim"]["lr"] == 0.02
    (tmp_path / "resolved.yaml").write_text(text)  # what it prints loads back as the same
    assert load_config(str(tmp_path / "resolved.yaml")).to_dict() == expected


def test_config_show_of_a_file(capsys, tmp_path):
    (tmp_path / "mine.yaml").write_text(f"base: recipe:{PAIR}\nname: mine\n")
    assert main(["config", "show", str(tmp_path / "mine.yaml"), "model.T=3"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["name"] == "mine" and shown["model"]["T"] == 3
    assert shown["teacher"]["name"] == "wrn_28_4"  # from the shipped pair and its base


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["recipe:mnist/teacher", "optim.name=adam"], "optim.name must be sgd or adamw"),
        (["recipe:mnist/teacher", "train.epoch=2"], "did you mean 'train.epochs'"),
        (["recipe:mnist/teachr"], "did you mean 'recipe:mnist/teacher'?"),
        (["missing.yaml"], "config file 'missing.yaml' does not exist"),
        (
            [
                "recipe:mnist/snn_baseline",
                "teacher.name=convnet3",
                "distill.method=sastc",
                "distill.options={sastc: {batch_size: 7}}",
            ],
            "distill.options.sastc.batch_size: data.batch_size per device, set by the trainer",
        ),
    ],
)
def test_config_show_mistakes_are_one_line(argv, message, capsys, tmp_path):
    expect_one_line_error(["config", "show", *argv], message, capsys, watch=[tmp_path])


# -- config schema ----------------------------------------------------------------------------
def test_schema_covers_every_key_and_every_field_has_a_meaning():
    keys = config_keys()
    assert {k.key for k in keys} == leaves(ExperimentConfig().to_dict())
    missing = [k.key for k in keys if not k.meaning]
    assert missing == [], f"fields without a '# meaning' comment in engine/config.py: {missing}"
    assert all(k.meaning != "|".join(k.allowed or []) for k in keys)


ENUMS = ["optim.name", "sched.name", "train.amp", "train.backprop", "train.stm_variant"]
ENUMS += ["train.neuron_backend", "train.device"]


@pytest.mark.parametrize("key", ENUMS)
def test_schema_allowed_values_are_the_ones_validation_takes(key):
    allowed = {k.key: k.allowed for k in config_keys()}[key]
    for value in allowed:
        load_config(None, [f"{key}={value.replace(':N', ':1')}"])
    with pytest.raises(ConfigError, match=key):
        load_config(None, [f"{key}=bogus"])


def test_schema_json(capsys):
    assert main(["config", "schema", "--json"]) == 0
    rows = {row["key"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["optim.name"] == {
        "key": "optim.name",
        "type": "str",
        "default": "sgd",
        "allowed": ["sgd", "adamw"],
        "meaning": "the optimizer",
    }
    assert rows["train.grad_clip"]["type"] == "float | None"
    assert rows["train.grad_clip"]["default"] is None and rows["train.grad_clip"]["allowed"] is None
    assert (
        "timm:NAME" in rows["model.name"]["allowed"] and "resnet19" in rows["model.name"]["allowed"]
    )
    assert "sastc" in rows["distill.method"]["allowed"]
    assert rows["data.augment"]["allowed"] == [
        "crop",
        "flip",
        "roll",
        "autoaugment",
        "cutout",
        "erase",
    ]


@pytest.mark.parametrize("method", ["kd", "fitnet", "sastc", "samd", "nld", "brd"])
def test_schema_lists_every_option_a_method_takes(method, capsys):
    assert main(["config", "schema", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    mine = [r for r in rows if r["key"].startswith(f"distill.options.{method}.")]
    listed = {r["key"].rsplit(".", 1)[1] for r in mine}
    undocumented = [r["key"] for r in mine if not r["meaning"]]
    assert not undocumented, f"add them to the Options: of {method}'s docstring"
    with pytest.raises(ConfigError, match=r"valid here: ([^)]*)") as err:  # what the loader takes
        load_config(None, [f"distill.method={method}", f"distill.options.{method}.bogus=1"])
    valid = str(err.value).rsplit("valid here: ", 1)[1].rstrip(")").split(", ")
    assert listed == set(valid)


def test_option_meanings_read_the_bullets_first_sentence():
    doc = """Summary line.

    Options:

    - ``a`` / ``b``: the student's / the teacher's map (a path;
      -1 = the last). Not shown: the rest;
    - ``c``: ``x`` or ``y``.

    Later text: - ``d``: not an option.
    """
    assert option_meanings(doc) == {
        "a": "the student's / the teacher's map (a path; -1 = the last)",
        "b": "the student's / the teacher's map (a path; -1 = the last)",
        "c": "`x` or `y`",
    }
    assert option_meanings("no section") == {} and option_meanings(None) == {}


def test_schema_method_meanings_come_from_the_docstrings(capsys):
    assert main(["config", "schema", "--json"]) == 0
    rows = {row["key"]: row["meaning"] for row in json.loads(capsys.readouterr().out)}
    assert rows["distill.options.kd.tau"] == "the softmax temperature (> 0)"
    assert rows["distill.options.sastc.weight"] == "the loss weight `beta`"  # first sentence


def test_schema_method_types_resolve_aliases(capsys):
    assert main(["config", "schema", "--json"]) == 0
    rows = {row["key"]: row["type"] for row in json.loads(capsys.readouterr().out)}
    assert rows["distill.options.fitnet.student_tap"] == "str | int"  # TapSpec
    assert rows["distill.options.sastc.teacher_taps"] == "Sequence[str | int] | None"
    assert rows["distill.options.kd.tau"] == "float"


def test_schema_method_defaults(capsys):
    assert main(["config", "schema", "--json"]) == 0
    rows = {row["key"]: row for row in json.loads(capsys.readouterr().out)}
    defaults = {
        k[len("distill.options.") :]: r["default"] for k, r in rows.items() if ".options." in k
    }
    assert defaults["kd.tau"] == 4.0 and defaults["nld.noise_scale"] == "variance"
    assert defaults["sastc.weight"] == 100.0 and defaults["sastc.warmup_epochs"] == 5
    assert defaults["sastc.regressor"] == "conv3x3" and defaults["sastc.embed_dim"] is None
    assert rows["distill.options.sastc.warmup_epochs"]["type"] == "int"
    assert defaults["sastc.batch_size"] is None  # the trainer sets it
    assert "leave it unset" in rows["distill.options.sastc.batch_size"]["meaning"]


def test_schema_table(capsys):
    assert main(["config", "schema"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["KEY", "TYPE", "DEFAULT", "MEANING"]
    assert any(line.split()[:3] == ["train.epochs", "int", "10"] for line in lines)
    assert "allowed: bptt | rate" in "\n".join(lines)
    for key in config_keys():
        assert any(line.startswith(f"{key.key} ") for line in lines), key.key


# -- shipped recipes --------------------------------------------------------------------------
def test_recipes_are_package_data_and_configs_is_the_same_folder():
    names = recipe_names()
    assert PAIR in names and "mnist/teacher" in names and len(names) > 50
    assert (ROOT / "configs").resolve() == RECIPES.resolve()
    assert {p.suffix for p in RECIPES.rglob("*") if p.is_file()} == {".yaml"}
    pyproject = (ROOT / "pyproject.toml").read_text()  # (tomllib: Python 3.11+)
    assert '"spikedistill" = ["recipes/**/*.yaml"]' in pyproject  # all of the above: the wheel


def test_configs_list_names_every_recipe_with_its_header(capsys):
    assert main(["configs", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "PAPER", "ROW", "TARGET"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert sorted(rows) == recipe_names()
    assert "SASTC, Table 2 (CIFAR-10)" in rows[PAIR]
    assert "ResNet-18 <- WRN-28-4, T=2" in rows[PAIR] and "% top-1" in rows[PAIR]


@pytest.mark.parametrize("name", [PAIR, f"recipe:{PAIR}", f"{PAIR}.yaml"])
def test_configs_show_prints_the_file(name, capsys):
    assert main(["configs", "show", name]) == 0
    assert capsys.readouterr().out == (RECIPES / f"{PAIR}.yaml").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["configs", "show", "cifar10/sastc_resnet19_from_wrn28_4_t2"],
            f"did you mean 'recipe:{PAIR}'",
        ),
        (["configs", "show", "../pyproject"], "no shipped recipe '../pyproject'"),
        (
            ["train", "recipe:mnist/techer"],
            "did you mean 'recipe:mnist/teacher'? (see 'spikedistill configs list')",
        ),
    ],
)
def test_bad_recipe_names_are_one_line_with_a_close_match(argv, message, capsys, tmp_path):
    expect_one_line_error(
        [*argv, *(["--out", str(tmp_path / "run")] if argv[0] == "train" else [])],
        message,
        capsys,
        watch=[tmp_path],
    )


def test_train_runs_a_shipped_recipe_from_anywhere(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `base:` and the recipe resolve inside the package
    data = "data.options={shape: [1, 28, 28], num_classes: 10, n_train: 8, n_test: 8}"
    overrides = ["data.name=synthetic", data, "data.batch_size=4", "data.eval_batch_size=8"]
    overrides += ["train.epochs=1", "model.options.width=4"]
    assert main(["train", "recipe:mnist/snn_baseline", *overrides]) == 0
    out = capsys.readouterr().out
    run = next((tmp_path / "runs").iterdir())
    assert run.name.startswith("snn_baseline-") and (run / "best.pt").exists()
    assert "done: best top-1" in out


def test_train_help_names_the_recipe_listing(capsys):
    assert main(["train", "--help"]) == 0
    assert "spikedistill configs list" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["config"], "required: show|schema"),
        (["configs"], "required: list|show"),
        (["configs", "show"], "required: name"),
        (["config", "schema", "--yaml"], "unrecognized arguments: --yaml"),
    ],
)
def test_usage_mistakes_are_one_line(argv, message, capsys):
    expect_one_line_error(argv, message, capsys)


def test_method_options_with_choices_are_checked_when_the_config_loads():
    """Options with a fixed set of values (``Literal``): the schema lists them, each loads,
    anything else fails at load (so ``config show`` catches it, not only ``train``)."""
    from spikedistill.cli.config_schema import method_option_keys

    keys = [k for k in method_option_keys() if k.allowed and k.type == "str"]
    names = {k.key.removeprefix("distill.options.") for k in keys}
    assert names == {
        "brd.mapping",
        "brd.weights",
        "fitnet.time_reduce",
        "nld.noise_scale",
        "samd.scaling",
        "sastc.regressor",
    }
    for k in keys:
        method = k.key.split(".")[2]
        assert k.default in k.allowed and k.type == "str"
        for value in k.allowed:
            cfg = load_config(None, [f"distill.method={method}", f"{k.key}={value}"])
            assert cfg.distill.options[method][k.key.rsplit(".", 1)[1]] == value
        with pytest.raises(ConfigError, match=rf"{k.key}: expected one of .*, got 'bogus'"):
            load_config(None, [f"distill.method={method}", f"{k.key}=bogus"])


def test_method_options_with_limits_are_checked_when_the_config_loads():
    """Numbers with a range (``typed.Bounds``) and lists with a least length
    (``typed.MinItems``): the schema lists the limit, the default loads, a value just outside
    fails at load with the limit."""
    from spikedistill.cli.config_schema import method_option_keys

    outside = {
        "> 0": (0, "must be > 0"),
        ">= 0": (-1, "must be >= 0"),
        ">= 1": (0, "must be >= 1"),
        ">= 4": (3, "must be >= 4"),
        ">= 0 and <= 1": (1.5, "must be >= 0 and <= 1"),
        "at least 1 item": ("[]", "must have at least 1 item"),
    }
    keys = {k.key.removeprefix("distill.options."): k for k in method_option_keys()}
    limits = {name: k.allowed for name, k in keys.items() if k.allowed and k.type != "str"}
    weights = ["brd.kd_weight", "brd.weight", "fitnet.weight", "kd.weight", "nld.weight"]
    weights += ["samd.weight", "sastc.weight"]
    assert limits == {
        "brd.tau": ["> 0"],
        "brd.curriculum_epochs": [">= 0"],
        "brd.branches": ["at least 1 item"],
        "kd.tau": ["> 0"],
        "nld.tau": ["> 0"],
        "nld.noise_weight": [">= 0 and <= 1"],
        "samd.tau": ["> 0"],
        "sastc.embed_dim": [">= 1"],
        "sastc.mlp_dim": [">= 4"],
        "sastc.student_taps": ["at least 1 item"],
        "sastc.teacher_taps": ["at least 1 item"],
        "sastc.warmup_epochs": [">= 0"],
        **{name: [">= 0"] for name in weights},
    }
    for name, (limit,) in limits.items():
        method, key = name.split(".")[0], keys[name].key
        if keys[name].default is not None:
            load_config(None, [f"distill.method={method}", f"{key}={keys[name].default}"])
        value, message = outside[limit]
        with pytest.raises(ConfigError, match=rf"{key} {message}"):
            load_config(None, [f"distill.method={method}", f"{key}={value}"])
        # a Python call: the constructor checks before it looks at the models
        option, python_value = name.split(".")[1], [] if value == "[]" else value
        with pytest.raises(ConfigError, match=rf"^{method} {option} {message}"):
            METHODS.get(method)(None, None, **{option: python_value})


def test_schema_lists_the_choices_of_an_optional_literal():
    from typing import Literal, Optional

    from spikedistill.cli.config_schema import literal_choices

    assert literal_choices(Literal["a", "b"]) == ("a", "b")
    assert literal_choices(Optional[Literal["a", "b"]]) == ("a", "b", None)  # noqa: UP045
    assert literal_choices(Literal["a"] | None) == ("a", None)
    assert literal_choices(int | None) is None and literal_choices(str) is None
