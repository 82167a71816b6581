"""The files a run's config names (``teacher.checkpoint``, ``model.init_from``), stored so the
run directory reads back from any working directory and survives moving the runs tree.

A run writes them (``config.yaml`` and the config inside its checkpoints) relative to the run
directory when they lie inside the folder holding it (the runs tree: ``../teacher/best.pt``),
absolute otherwise; reading the run back resolves the relative ones against its directory.
A run written before paths were stored so named them relative to where training started:
such a path that does not exist next to the run but does from here is taken from here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..checkpoint import CHECKPOINTS

#: the (section, key) pairs of the config that name a file or a run directory
PATH_KEYS = (("teacher", "checkpoint"), ("model", "init_from"))


def _absolute(value: str, base: str | os.PathLike | None = None) -> str:
    """``value`` (``~`` expanded) as an absolute, normalised path, relative ones joined onto
    ``base`` (default: the working directory)."""
    path = os.path.expanduser(value)
    return os.path.normpath(os.path.join(os.path.abspath(base or os.curdir), path))


def stored_path(value: str, run_dir: str | os.PathLike) -> str:
    """``value`` (as given: relative to the working directory) as a run stores it: relative to
    ``run_dir`` when it lies in the folder that holds ``run_dir``, else absolute."""
    path = _absolute(value)
    home = _absolute(str(run_dir))
    tree = os.path.dirname(home)
    if os.path.commonpath([path, tree]) == tree:
        return os.path.relpath(path, home)
    return path


def resolved_path(value: str, run_dir: str | os.PathLike) -> str:
    """A path as ``run_dir``'s config stores it, absolute: relative ones against ``run_dir``
    (or, written by an older version, against the working directory when only there)."""
    if os.path.isabs(os.path.expanduser(value)):
        return _absolute(value)
    here = _absolute(value, run_dir)
    if not os.path.exists(here) and os.path.exists(os.path.expanduser(value)):
        return _absolute(value)  # an older run: relative to where training started
    return here


def _map_paths(config: dict[str, Any], convert: Any) -> dict[str, Any]:
    """A copy of the config dict with its path keys (when set to a string) converted."""
    out = dict(config)
    for section, key in PATH_KEYS:
        node = out.get(section)
        if isinstance(node, dict) and isinstance(node.get(key), str) and node[key]:
            out[section] = {**node, key: convert(node[key])}
    return out


def stored_config(config: Any, run_dir: str | os.PathLike) -> dict[str, Any]:
    """The config dict (or ``ExperimentConfig``) a run at ``run_dir`` writes: its paths by
    ``stored_path``."""
    data = config.to_dict() if hasattr(config, "to_dict") else config
    return _map_paths(data, lambda value: stored_path(value, run_dir))


def resolved_config(config: dict[str, Any], run_dir: str | os.PathLike) -> dict[str, Any]:
    """A config dict read from the run at ``run_dir``, its paths absolute (``resolved_path``)."""
    return _map_paths(config, lambda value: resolved_path(value, run_dir))


def run_of_config(path: str | os.PathLike) -> Path | None:
    """The run directory whose own ``config.yaml`` ``path`` is (beside a checkpoint), else
    ``None``."""
    folder = Path(path).parent
    if Path(path).name == "config.yaml" and any((folder / n).is_file() for n in CHECKPOINTS):
        return folder
    return None


def file_config(config: dict[str, Any], path: str) -> dict[str, Any]:
    """A config dict read from the file ``path``, its paths as the working directory reads
    them: a run's own ``config.yaml`` stores them for its folder."""
    run = run_of_config(path)
    return config if run is None else resolved_config(config, run)


def absolute_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict as given (its paths relative to the working directory), paths absolute."""
    return _map_paths(config, _absolute)


def checkpoint_run_dir(path: str | os.PathLike) -> Path:
    """The run directory of a checkpoint file (its folder) or the directory itself."""
    path = Path(path)
    return path if path.is_dir() else path.parent
