"""The loop position and RNG streams a resumed run restores, and the config check it makes."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .distributed import DistContext


@dataclass
class TrainState:
    """Everything besides module/optimizer states that resume must restore."""

    epoch: int = 0  # current (0-based) epoch
    step_in_epoch: int = 0  # batches of `epoch` already done
    global_step: int = 0
    running: dict[str, float] = field(default_factory=dict)  # sums of the partial epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    best_top1: float = -1.0
    skipped_steps: int = 0  # non-finite losses skipped so far (train.skip_nonfinite)

    def add_batch(self, terms: dict[str, float], correct: float, samples: int) -> float:
        """Add a batch's mean loss terms, correct count and size to the epoch's running sums
        (each term weighted by the batch size); returns the batch's total loss."""
        run, total = self.running, sum(terms.values())
        run["loss"] = run.get("loss", 0.0) + total * samples
        for k, v in terms.items():
            run[k] = run.get(k, 0.0) + v * samples
        run["correct"] = run.get("correct", 0.0) + correct
        run["samples"] = run.get("samples", 0.0) + samples
        return total

    def end_epoch(
        self, lr: float, train: dict[str, float], test: dict[str, Any], stm: float | None
    ) -> bool:
        """Record the epoch just trained (its history row, the best test top-1) and start the
        next; returns whether its test top-1 is the best so far."""
        self.history.append(
            {
                "epoch": self.epoch + 1,
                "lr": lr,
                **{f"train_{k}": v for k, v in train.items() if k != "seconds"},
                "test_loss": test["loss"],
                "test_top1": test["top1"],
                "test_samples": test["samples"],
                **({"stm": stm} if stm is not None else {}),
                "seconds": train["seconds"],
            }
        )
        improved = test["top1"] is not None and test["top1"] > self.best_top1
        if improved:
            self.best_top1 = test["top1"]
        self.epoch, self.step_in_epoch, self.running = self.epoch + 1, 0, {}
        return improved

    def summed_running(self, dist: DistContext, device: torch.device) -> dict[str, float]:
        """The running sums added over all ranks (a collective: every rank calls it);
        ``seconds`` stays this rank's own wall time."""
        run = self.running
        keys = sorted(k for k in run if k != "seconds")
        summed = dict(zip(keys, dist.sum([run[k] for k in keys], device), strict=True))
        return {**summed, **{k: v for k, v in run.items() if k == "seconds"}}

    def to_dict(self) -> dict[str, Any]:
        """Plain containers (a ``weights_only`` checkpoint loads them), copied."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        """The inverse of ``to_dict``; ``skipped_steps`` may be missing (older runs)."""
        return cls(
            epoch=d["epoch"],
            step_in_epoch=d["step_in_epoch"],
            global_step=d["global_step"],
            running=dict(d["running"]),
            history=list(d["history"]),
            best_top1=d["best_top1"],
            skipped_steps=d.get("skipped_steps", 0),
        )


def rng_state() -> dict[str, Any]:
    """The torch (CPU, and each CUDA device's) and Python RNG states."""
    return {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
        **({"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {}),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured (the CUDA streams only where CUDA is present)."""
    torch.set_rng_state(state["torch"].cpu())
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([r.cpu() for r in state["cuda"]])


def config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += config_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def epoch_message(
    state: TrainState, epochs: int, train: dict[str, float], test: dict[str, Any]
) -> str:
    """The log line of the epoch ``state`` has just ended."""
    tested = (
        f"test loss {test['loss']:.4f} top1 {test['top1']:.2f} (best {state.best_top1:.2f})"
        if test["top1"] is not None
        else "not evaluated"
    )
    return (
        f"epoch {state.epoch}/{epochs}: train loss {train['loss']:.4f} "
        f"top1 {train['top1']:.2f} | {tested} | {train['seconds']:.1f}s"
    )


def epoch_means(sums: dict[str, float]) -> dict[str, float]:
    """Per-sample means of an epoch's running sums (``add_batch``, summed over ranks), with
    ``top1`` in percent."""
    n = max(sums.get("samples", 0.0), 1.0)
    out = {k: v / n for k, v in sums.items() if k not in ("correct", "samples", "seconds")}
    out["top1"] = 100.0 * sums.get("correct", 0.0) / n
    return out


def stm_summary(cfg: Any, history: list[dict[str, Any]]) -> dict[str, Any]:
    """``stm_last10``, the mean of the last (up to) 10 STMs the history records (per evaluated
    epoch, ``train.stm_every``), as the SASTC paper reports it, and ``stm_variant``, their
    definition; nothing when no epoch recorded one."""
    stms = [r["stm"] for r in history if r.get("stm") is not None][-10:]
    if not stms:
        return {}
    return {"stm_last10": sum(stms) / len(stms), "stm_variant": cfg.train.stm_variant}


def run_summary(cfg: Any, history: list[dict[str, Any]]) -> dict[str, Any]:
    """``metrics.json``: the run's name, model, best and last test top-1 (the STM averaged over
    its last 10 records, if any) and its history."""
    tested = [r["test_top1"] for r in history if r["test_top1"] is not None]
    return {
        "name": cfg.name,
        "model": cfg.model.name,
        "spiking": cfg.model.spiking,
        "T": cfg.model.T if cfg.model.spiking else None,
        "best_top1": max(tested, default=None),
        "last_top1": history[-1]["test_top1"] if history else None,
        "epochs": len(history),
        **stm_summary(cfg, history),
        "history": history,
    }
