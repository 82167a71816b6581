"""SIGTERM (a scheduler's time limit or preemption, ``kill``) ends a run at the end of its
current step, after saving ``last.pt``, instead of losing the work since its last checkpoint.
Slurm sends it before the kill (``#SBATCH --signal=TERM@120`` for two minutes' notice)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def sigterm_requests() -> Iterator[Callable[[], bool]]:
    """Within the block SIGTERM only marks a request; yields the function that tells whether
    one came. Outside the main thread (where Python takes no handler) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    received: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, _frame: received.append(signum))
    try:
        yield lambda: bool(received)
    finally:
        signal.signal(signal.SIGTERM, before)
