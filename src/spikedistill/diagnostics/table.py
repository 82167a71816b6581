"""The report's tables: one row per run (or per group of runs that differ only by their seed,
as mean +- std) and the config keys whose values differ between the runs. Pure functions of
:class:`RunDiagnostics`; the numbers are formatted here (energy in an automatic unit)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .energy import OpsReport

NA = "n/a"
_ENERGY_UNITS = ((1e-12, "pJ"), (1e-9, "nJ"), (1e-6, "µJ"), (1e-3, "mJ"), (1.0, "J"))
_COUNT_UNITS = ((1.0, ""), (1e3, "k"), (1e6, "M"), (1e9, "G"), (1e12, "T"))
#: config keys that do not make runs different experiments: grouped as seeds of one
SEED_KEYS = ("name", "train.seed")


@dataclass
class RunDiagnostics:
    name: str
    summary: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)  # the run's config, nested
    rates: dict[str, list[float]] = field(default_factory=dict)
    ops: OpsReport | None = None
    teacher_ops: OpsReport | None = None
    stm: float | None = None
    attention: tuple[np.ndarray, list[str], list[str]] | None = None  # alpha [T, S, N], names
    maps: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # images, SAM, CAM
    notes: list[str] = field(default_factory=list)


# -- numbers ---------------------------------------------------------------------------------
def _unit(value: float, units: Sequence[tuple[float, str]], digits: int = 3):
    """``(scale, unit, decimals)`` that show ``value`` with ``digits`` significant figures in the
    largest unit it reaches (at least the first)."""
    index = 0
    while index + 1 < len(units) and abs(value) >= units[index + 1][0]:
        index += 1
    scale, unit = units[index]
    number = abs(value) / scale
    decimals = max(digits - 1 - math.floor(math.log10(number)), 0) if number else 0
    if round(number, decimals) >= 1000 and index + 1 < len(units):  # 999.96 pJ is 1.00 nJ
        return _unit(round(number, decimals) * scale, units[index + 1 :], digits)
    return scale, unit, decimals


def _scaled(value: float | None, units: Sequence[tuple[float, str]], std: float | None = None):
    """``value`` with three significant figures in its unit (``1.234e-7`` J: ``123 nJ``); with
    ``std``: ``value ± std`` in the same unit and decimals."""
    if value is None or not math.isfinite(value):
        return NA
    scale, unit, decimals = _unit(value, units)
    text = f"{value / scale:.{decimals}f}"
    if std is not None:
        text += f" ± {std / scale:.{decimals}f}"
    return f"{text} {unit}".rstrip()


def format_energy(joules: float | None, std: float | None = None) -> str:
    """Energy in pJ, nJ, µJ, mJ or J (whichever puts it in [1, 1000)), three significant
    figures (and ``± std`` in the same unit); ``n/a`` for ``None``."""
    return _scaled(joules, _ENERGY_UNITS, std)


def format_count(count: float | None, std: float | None = None) -> str:
    """An operation count with three significant figures and k/M/G/T: ``1.23 M``."""
    return _scaled(count, _COUNT_UNITS, std)


def _fixed(spec: str):
    def fmt(value: float | None, std: float | None = None) -> str:
        if value is None:
            return NA
        return format(value, spec) + ("" if std is None else f" ± {format(std, spec)}")

    return fmt


# -- rows ------------------------------------------------------------------------------------
def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (empty dicts kept as leaves)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _setting(config: dict[str, Any], key: str, spiking_only: bool = False) -> str:
    flat = flatten(config)
    if key not in flat or (spiking_only and not flat.get("model.spiking", True)):
        return NA
    return str(flat[key])


def _measures(r: RunDiagnostics) -> dict[str, float | None]:
    """The run's numbers, ``None`` where a figure does not apply (SOPs and firing rate of an
    ANN, teacher energy and STM without a teacher)."""
    import torch

    from .firing import mean_rate

    spiking = bool(flatten(r.config).get("model.spiking", bool(r.rates)))
    rate = mean_rate({k: torch.tensor(v) for k, v in r.rates.items()}) if r.rates else None
    return {
        "best_top1": r.summary.get("best_top1"),
        "last_top1": r.summary.get("last_top1"),
        "rate": None if rate is None else float(rate),
        "sops": r.ops.sops if r.ops and spiking else None,
        "macs": r.ops.macs if r.ops else None,
        "energy": r.ops.energy_pj * 1e-12 if r.ops else None,
        "teacher_energy": r.teacher_ops.energy_pj * 1e-12 if r.teacher_ops else None,
        "stm": r.stm,
        "stm_last10": r.summary.get("stm_last10"),
    }


_COLUMNS = [  # (header, measure, formatter)
    ("best top-1 (%)", "best_top1", _fixed(".2f")),
    ("last top-1 (%)", "last_top1", _fixed(".2f")),
    ("firing rate", "rate", _fixed(".4f")),
    ("SOPs / sample", "sops", format_count),
    ("MACs / sample", "macs", format_count),
    ("energy / sample", "energy", format_energy),
    ("teacher energy / sample", "teacher_energy", format_energy),
    ("STM (paper, ln)", "stm", _fixed(".4f")),
    ("STM last 10", "stm_last10", _fixed(".4f")),
]
SETTINGS = [  # (header, dotted config key, only for spiking students)
    ("method", "distill.method", False),
    ("T", "model.T", True),
    ("backprop", "train.backprop", True),
    ("neuron", "model.neuron", True),
    ("seed", "train.seed", False),
]
HEAD = ["run"] + [h for h, _, _ in SETTINGS] + [h for h, _, _ in _COLUMNS]


def _mean_std(values: list[float | None], fmt) -> str:
    if any(v is None for v in values):
        return NA if all(v is None for v in values) else "mixed"
    mean, std = float(np.mean(values)), float(np.std(values, ddof=1))
    return fmt(mean, std)


def _group_row(group: list[RunDiagnostics]) -> list[str]:
    """One row: a run's values, or a group's mean ± (sample) std over its seeds."""
    first = group[0]
    settings = [_setting(first.config, key, only) for _, key, only in SETTINGS]
    measures = [_measures(r) for r in group]
    if len(group) == 1:
        cells = [fmt(measures[0][key]) for _, key, fmt in _COLUMNS]
        variant = first.summary.get("stm_variant")
        if variant and cells[-1] != NA:
            cells[-1] += f" ({variant})"
        return [first.name, *settings, *cells]
    seeds = [_setting(r.config, "train.seed") for r in group]
    settings[-1] = ", ".join(seeds)
    cells = [_mean_std([m[key] for m in measures], fmt) for _, key, fmt in _COLUMNS]
    names = ", ".join(r.name for r in group)
    return [f"{names} (mean ± std of {len(group)} seeds)", *settings, *cells]


def seed_groups(runs: Sequence[RunDiagnostics]) -> list[list[RunDiagnostics]]:
    """Runs whose configs agree but for :data:`SEED_KEYS`, with distinct seeds, in the order
    they first appear (two runs of the same seed are repeats: each keeps its own row)."""
    groups: list[tuple[str, list[RunDiagnostics]]] = []
    for r in runs:
        flat = {k: v for k, v in flatten(r.config).items() if k not in SEED_KEYS}
        key = json.dumps(flat, sort_keys=True, default=str) if r.config else f"run:{id(r)}"
        seed = _setting(r.config, "train.seed")
        home = next(
            (
                g
                for k, g in groups
                if k == key and seed not in {_setting(m.config, "train.seed") for m in g}
            ),
            None,
        )
        if home is None:
            groups.append((key, [r]))
        else:
            home.append(r)
    return [g for _, g in groups]


def summary_rows(runs: Sequence[RunDiagnostics]) -> list[list[str]]:
    """The header and one row per run, runs differing only by seed as one mean ± std row."""
    return [HEAD] + [_group_row(g) for g in seed_groups(runs)]


def _cell(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (dict, list, bool)):
        return json.dumps(value, default=str)
    return str(value)


#: keys that mean nothing for an ANN run (its T, neuron, backprop)
SNN_ONLY = ("model.T", "model.neuron", "train.backprop", "train.rate_", "train.neuron_backend")


def _snn_keys_na(flat: dict[str, Any]) -> dict[str, Any]:
    if flat.get("model.spiking", True):
        return flat
    return {k: "n/a" if k.startswith(SNN_ONLY) else v for k, v in flat.items()}


def config_diff_rows(runs: Sequence[RunDiagnostics]) -> list[list[str]]:
    """``[key, value in run 1, value in run 2, ...]`` for every dotted config key whose value is
    not the same in all runs (``-`` where a run has no such key, ``n/a`` for an ANN's T,
    neuron and backprop); just the header when they agree or there is one run."""
    flats = [_snn_keys_na(flatten(r.config)) for r in runs]
    keys = sorted(set().union(*flats)) if flats else []
    missing = object()
    rows = [["config key", *(r.name for r in runs)]]
    for key in keys:
        values = [f.get(key, missing) for f in flats]
        if any(v != values[0] for v in values[1:]):
            rows.append([key, *("-" if v is missing else _cell(v) for v in values)])
    return rows
