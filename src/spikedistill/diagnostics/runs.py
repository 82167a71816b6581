"""A trained run's metrics read back (``report``), checked field by field so that a broken or
foreign file is one error naming it, and names that tell runs of the same folder name apart.
Its checkpoint is read by ``engine.load``."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError


def _is_number(value: Any, finite: bool = False) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and (not finite or isinstance(value, int) or math.isfinite(value))


def _check_summary(summary: Any, path: Path) -> None:
    """What the report reads of ``metrics.json``: a history of epochs with numbers."""

    def bad(what: str) -> DataError:
        return DataError(f"{path}: {what} (not a metrics.json written by spikedistill train?)")

    if not isinstance(summary, dict):
        raise bad(f"holds a JSON {type(summary).__name__}, not an object")
    history = summary.get("history")
    if not isinstance(history, list):
        raise bad("no 'history' list of epochs")
    for i, row in enumerate(history):
        if not isinstance(row, dict) or not _is_number(row.get("epoch"), finite=True):
            raise bad(f"history[{i}] is not an epoch (no 'epoch' number)")
        for key in ("test_top1", *(k for k in row if k.startswith("train_") or k == "stm")):
            if row.get(key) is not None and not _is_number(row[key]):
                raise bad(f"history[{i}].{key} is {row[key]!r:.40}, not a number")
    for key in ("best_top1", "last_top1"):
        value = summary.get(key)
        if value is not None and not _is_number(value, finite=True):
            raise bad(f"{key} is {value!r:.40}, not a number")


def read_metrics(run: str | os.PathLike) -> dict[str, Any]:
    """The summary in ``run/metrics.json``, checked."""
    path = Path(run) / "metrics.json"
    from ..checkpoint import run_checkpoint

    run_checkpoint(run)  # a run directory at all
    if not path.is_file():
        raise ConfigError(f"{run}: no metrics.json (is it a spikedistill run directory?)")
    try:
        text = path.read_bytes().decode("utf-8")
        summary = json.loads(text) if text.strip() else None
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text (byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON ({err.msg}, line {err.lineno})") from None
    except (ValueError, RecursionError) as err:  # numbers of > 4300 digits, deep nesting
        raise DataError(f"{path} is not a metrics.json ({type(err).__name__}: {err})") from None
    if summary is None:
        raise DataError(f"{path} is empty")
    _check_summary(summary, path)
    return summary


def first_batches(loader: Iterable, count: int, dataset: str) -> list:
    """The first ``count`` batches of ``loader``; at least one."""
    batches = [b for _, b in zip(range(count), loader, strict=False)]
    if not batches:
        raise DataError(f"the test set of {dataset} is empty: nothing to measure")
    return batches


def unique_names(names: Sequence[str], key=lambda name: name) -> list[str]:
    """``names`` with ``-2``, ``-3``, ... added to repeats (compared by ``key``)."""
    seen: set[str] = set()
    out = []
    for name in names:
        unique, n = name, 1
        while key(unique) in seen:
            n += 1
            unique = f"{name}-{n}"
        seen.add(key(unique))
        out.append(unique)
    return out


def run_labels(runs: Sequence[str | os.PathLike]) -> list[str]:
    """Distinct labels of run directories: the last path part, or as many of the last parts as
    tell them apart (``a/run``, ``b/run``); the same folder twice gets ``-2``."""
    parts = [Path(os.path.abspath(r)).parts for r in runs]
    for depth in range(1, max(map(len, parts), default=1) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return unique_names([Path(os.path.abspath(r)).name for r in runs])


def file_stems(labels: Sequence[str]) -> list[str]:
    """A distinct file name part per label (also on case-insensitive file systems)."""
    stems = [re.sub(r"[^\w.-]+", "_", label).strip("_.") or "run" for label in labels]
    return unique_names(stems, key=str.lower)
