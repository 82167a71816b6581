"""Property: any value of any schema type in any free-form option dict gives a working
run (built, one training step) or one ``ConfigError`` naming the key; nothing else."""

import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikedistill.data import DATASETS, build_datasets, make_loader
from spikedistill.distill.base import METHODS
from spikedistill.engine.config import config_from_dict
from spikedistill.engine.objective import build_objective
from spikedistill.engine.setup import build_student
from spikedistill.errors import ConfigError
from spikedistill.models.registry import option_types
from spikedistill.spiking.config import neuron_option_types
from spikedistill.typed import parameter_types

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 300))  # more: FUZZ_EXAMPLES=4000 pytest ...
SECTIONS = {  # a free-form dict -> the names it may hold
    "model.options": [*option_types("convnet3")],
    "model.neuron_kwargs": [*neuron_option_types()],
    "teacher.options": [*option_types("convnet3")],
    "data.options": [
        *parameter_types(DATASETS.get("synthetic"), skip=("root", "download", "seed"))
    ],
    **{
        f"distill.options.{name}": [
            *parameter_types(METHODS.get(name), skip=("student", "teacher"))
        ]
        for name in METHODS
    },
}
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 12),
    st.integers(2**63, 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "abc", "mean", "stem", "-1", "layer1", "sigmoid", "soft"]),
)
VALUES = (
    SCALARS
    | st.lists(SCALARS, max_size=4)
    | st.dictionaries(st.text(max_size=3), SCALARS, max_size=2)
)


def _config(section: str, options: dict) -> dict:
    method = section.rsplit(".", 1)[1] if section.startswith("distill.") else "kd"
    data = {"name": "synthetic", "batch_size": 16, "eval_batch_size": 16,
            "options": {"shape": [1, 8, 8], "n_train": 32, "n_test": 16}}  # fmt: skip
    cfg = {
        "data": data,
        "model": {"name": "convnet3", "spiking": True, "T": 2, "options": {"width": 4}},
        "teacher": {"name": "convnet3", "options": {"width": 4}},
        "distill": {"method": method},
    }
    *parents, key = section.split(".")
    node = cfg
    for part in parents:
        node = node.setdefault(part, {})
    node[key] = (
        options if key != "options" or parents != ["data"] else {**data["options"], **options}
    )
    return cfg


def _one_step(cfg) -> None:
    """What the trainer does before and in its first step."""
    train, _, info = build_datasets(cfg.data.name, **cfg.data.options)
    student = build_student(cfg, info.num_classes, info.in_channels, info.time_steps)
    objective = build_objective(
        cfg, student, info.num_classes, info.in_channels, num_train=len(train)
    )
    x, y = next(iter(make_loader(train, cfg.data.batch_size, train=True, info=info)))
    objective.build(student, x, y)
    _, terms = objective(student, x, y, torch.arange(len(y)))
    sum(terms.values()).backward()


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_every_section_with_its_defaults_runs_a_step(section):
    """The property below is not vacuous: with no options every section trains."""
    _one_step(config_from_dict(_config(section, {})))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SECTIONS)).flatmap(
    lambda section: st.tuples(
        st.just(section),
        st.dictionaries(st.sampled_from(SECTIONS[section]) | st.text(max_size=4), VALUES,
                        max_size=3),
    )
))  # fmt: skip
def test_free_form_options_give_a_working_run_or_a_config_error(case):
    section, options = case
    try:
        cfg = config_from_dict(_config(section, options))
        _one_step(cfg)
    except ConfigError:
        pass
