"""The free-form option dicts of a config (``model.options``, ``model.neuron_kwargs``,
``teacher.options``, ``distill.options``, ``data.options``), each checked against the
signature of what it is handed to, when the config is loaded: before anything is built or
written, a wrong name or type is one ``ConfigError`` naming the dotted key."""

from __future__ import annotations

import difflib
import inspect
from typing import TYPE_CHECKING, Any

from ..data import DATASETS
from ..distill.base import method_class
from ..distill.objective import parse_methods
from ..errors import ConfigError
from ..models.registry import check_model_options
from ..spiking import neuron_config
from ..spiking.config import check_neuron_kwargs
from ..typed import check_options, parameter_types
from ..user_code import is_external

if TYPE_CHECKING:
    from .config import ExperimentConfig

#: options the config sets elsewhere: where
RESERVED_OPTIONS = {
    "num_classes": "the dataset gives the number of classes",
    "in_channels": "the dataset gives the input channels",
    "spiking": "set model.spiking (a teacher is an ANN)",
    "T": "set model.T",
    "neuron": "set model.neuron",
    "neuron_kwargs": "set model.neuron_kwargs",
}

#: method options the trainer fills in (``build_objective``), with what it puts there
SET_BY_TRAINER = {"batch_size": "data.batch_size per device, set by the trainer: leave it unset"}


def check_zoo_options(name: str, options: dict[str, Any], path: str) -> None:
    for key, home in RESERVED_OPTIONS.items():
        if key in options:
            raise ConfigError(f"{path}.{key}: {home}")
    if not is_external(name):  # an external model's callable checks its own options
        check_model_options(name, options, path)


def check_model_section(cfg: ExperimentConfig) -> None:
    m = cfg.model
    check_zoo_options(m.name, m.options, "model.options")
    kwargs = check_neuron_kwargs(m.neuron_kwargs, "model.neuron_kwargs")
    if m.spiking:
        neuron_config(m.neuron, **kwargs)  # the preset name and the values' ranges
    elif kwargs:
        raise ConfigError("model.neuron_kwargs is set but model.spiking is false")


def check_distill_section(cfg: ExperimentConfig) -> None:
    classes = {c.name: c for c in map(method_class, parse_methods(cfg.distill.method))}
    options: Any = cfg.distill.options
    for name, section in options.items():
        if name not in classes:
            close = difflib.get_close_matches(str(name), list(classes), n=1)
            hint = f"; did you mean distill.options.{close[0]}?" if close else ""
            raise ConfigError(
                f"distill.options.{name}: method {name!r} is not in "
                f"distill.method={cfg.distill.method!r}{hint}"
            )
        types = parameter_types(classes[name], skip=("student", "teacher"))
        checked = check_options(section, types, f"distill.options.{name}", f"method {name!r}")
        preset = sorted(SET_BY_TRAINER.keys() & checked.keys())
        if preset:
            raise ConfigError(f"distill.options.{name}.{preset[0]}: {SET_BY_TRAINER[preset[0]]}")


def check_free_form(cfg: ExperimentConfig) -> None:
    """Check every free-form dict of ``cfg`` (``ConfigError`` on the first mistake)."""
    check_model_section(cfg)
    if cfg.teacher.name:
        check_zoo_options(cfg.teacher.name, cfg.teacher.options, "teacher.options")
    elif cfg.teacher.options:
        raise ConfigError("teacher.options is set but teacher.name is not")
    check_distill_section(cfg)
    if not is_external(cfg.data.name):  # your own builder is checked when it is called
        types = parameter_types(DATASETS.get(cfg.data.name), skip=("root", "download", "seed"))
        check_options(cfg.data.options, types, "data.options", f"dataset {cfg.data.name!r}")


def with_method_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` (as a dict) with each method's omitted options at their defaults, so that
    an option set to its default is no change (``--resume``); as given where its methods do
    not resolve."""
    distill = config.get("distill")
    try:
        names = parse_methods(distill["method"])
        classes = [method_class(name) for name in names]
    except (ConfigError, KeyError, TypeError, AttributeError):
        return config
    options = dict(distill.get("options") or {})
    for cls in classes:
        params = inspect.signature(cls.__init__).parameters.values()
        defaults = {p.name: p.default for p in params if p.default is not p.empty}
        for key in SET_BY_TRAINER:
            defaults.pop(key, None)
        options[cls.name] = {**defaults, **options.get(cls.name, {})}
    return {**config, "distill": {**distill, "options": options}}
