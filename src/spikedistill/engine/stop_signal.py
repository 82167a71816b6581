"""SIGTERM (a scheduler's time limit or preemption, ``kill``) and Ctrl-C (SIGINT) end a run at
the end of its current step, after saving ``last.pt``, instead of losing the work since its
last checkpoint. Slurm sends SIGTERM before the kill (``#SBATCH --signal=TERM@120`` for two
minutes' notice); a second Ctrl-C interrupts at once."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator

import torch

from .distributed import DistContext

#: the signals that stop a run, saved, with how the stop line names them
STOP_SIGNALS = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "Ctrl-C"}


@contextlib.contextmanager
def stop_requests() -> Iterator[Callable[[], int]]:
    """Within the block SIGTERM and a first Ctrl-C only mark a request; yields the function
    that returns the signal that came (0: none). Outside the main thread (where Python takes
    no handler) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: 0
        return
    received: list[int] = []

    def request(signum: int, _frame: object) -> None:
        if signum == signal.SIGINT:
            if signal.SIGINT in received:  # the second: now
                signal.signal(signal.SIGINT, signal.default_int_handler)
                raise KeyboardInterrupt
            print("\nCtrl-C: the run stops after this step or evaluation, saved (Ctrl-C again: "
                  "at once)", file=sys.stderr, flush=True)  # fmt: skip
        received.append(signum)

    before = {s: signal.signal(s, request) for s in STOP_SIGNALS}
    try:
        yield lambda: received[0] if received else 0
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def _flags(local: int) -> list[float]:
    return [float(local == s) for s in STOP_SIGNALS]


def _first(counts: list[float]) -> int:
    return next((s for s, n in zip(STOP_SIGNALS, counts, strict=True) if n), 0)


def agreed_stop(local: int, dist: DistContext, device: torch.device) -> int:
    """The stop signal any rank received (SIGTERM first; 0: none), so that every rank stops
    at the same point: one all-reduce under torchrun."""
    return _first(dist.sum(_flags(local), device))


def agreed_step(
    nonfinite: bool, local: int, dist: DistContext, device: torch.device
) -> tuple[bool, int]:
    """Whether any rank's loss is non-finite (every rank then skips the step, or the ranks'
    gradient all-reduces would pair different steps), and :func:`agreed_stop`'s signal: one
    all-reduce under torchrun, for both."""
    counts = dist.sum([float(nonfinite), *_flags(local)], device)
    return counts[0] > 0, _first(counts[1:])
