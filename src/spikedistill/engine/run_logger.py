"""The run directory: ``config.yaml``, ``log.txt``, ``metrics.csv``, ``metrics.json`` and
TensorBoard events (when ``tensorboard`` is installed)."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import yaml


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


class RunLogger:
    """Writes nothing until the run does (the folder and the TensorBoard writer are made on
    first use), so a run that fails while being set up leaves its folder as it was."""

    def __init__(self, run_dir: str | os.PathLike, enabled: bool = True) -> None:
        self.dir = Path(run_dir)
        self.enabled = enabled
        self._tb: Any = None

    def _writer(self) -> Any:
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.dir / "tensorboard"))
            except Exception:  # tensorboard is optional
                self._tb = False
        return self._tb

    def save_config(self, config: dict[str, Any]) -> None:
        if self.enabled:
            self.dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    def log(self, message: str) -> None:
        if self.enabled:
            self.dir.mkdir(parents=True, exist_ok=True)
            with open(self.dir / "log.txt", "a", encoding="utf-8") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.enabled and self._writer():
            for key, value in values.items():
                self._tb.add_scalar(key, value, step)
            self._tb.flush()

    def epoch_metrics(self, history: list[dict[str, Any]], summary: dict[str, Any]) -> None:
        """Rewrite ``metrics.csv`` (one row per epoch of ``history``, the checkpointed state,
        so a resumed run never repeats an epoch) and ``metrics.json`` (the summary)."""
        if not self.enabled:
            return
        columns = list(dict.fromkeys(key for row in history for key in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        write_text_atomic(self.dir / "metrics.csv", text.getvalue())
        write_json_atomic(self.dir / "metrics.json", summary)

    def close(self) -> None:
        if self._tb:
            self._tb.close()
