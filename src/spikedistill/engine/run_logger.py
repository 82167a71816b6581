"""The run directory: ``config.yaml``, ``log.txt``, ``metrics.csv``, ``metrics.json`` and
TensorBoard events (when ``tensorboard`` is installed)."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any

import yaml


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


class RunLogger:
    def __init__(self, run_dir: str | os.PathLike, enabled: bool = True) -> None:
        self.dir = Path(run_dir)
        self.enabled = enabled
        self._tb = None
        if not enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.dir / "tensorboard"))
        except Exception:  # tensorboard is optional
            self._tb = None

    def save_config(self, config: dict[str, Any]) -> None:
        if self.enabled:
            text = yaml.safe_dump(config, sort_keys=False)
            (self.dir / "config.yaml").write_text(text)

    def log(self, message: str) -> None:
        if self.enabled:
            with open(self.dir / "log.txt", "a", encoding="utf-8") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.enabled and self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(key, value, step)
            self._tb.flush()

    def epoch_metrics(self, row: dict[str, Any], summary: dict[str, Any]) -> None:
        """Append one epoch to ``metrics.csv`` and rewrite ``metrics.json`` with the summary."""
        if not self.enabled:
            return
        path = self.dir / "metrics.csv"
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        write_json_atomic(self.dir / "metrics.json", summary)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
