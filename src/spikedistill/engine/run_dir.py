"""Claiming a run directory: never two runs in one folder, never a run over another's files.

``claim_run_dir`` checks the folder (a new run refuses one that holds a run; ``--resume``
refuses one whose results have no ``last.pt`` to continue from), then holds an exclusive
lock file with the owner's pid and host until the run ends. A lock whose process is gone
(same host) is stale and taken over. Default folders get unique names.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import SpikeDistillError

LOCK = ".lock"
#: files a run writes; a new run refuses a folder holding any of them
RUN_FILES = ("last.pt", "best.pt", "metrics.json", "metrics.csv", "config.yaml", "log.txt")
#: what a resume without ``last.pt`` would overwrite
RESULTS = ("best.pt", "metrics.json", "metrics.csv", "comparison.png")


class RunDirError(SpikeDistillError):
    """A run directory that is in use or would be overwritten."""


def default_run_dir(stem: str, root: str | os.PathLike = "runs") -> Path:
    """``root/STEM-YYYYmmdd-HHMMSS``, with ``-2``, ``-3``, ... when that name is taken
    (created here, so two runs started in the same second get two folders)."""
    base = Path(root) / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        with contextlib.suppress(FileExistsError):
            path.mkdir()
            return path
    raise RunDirError(f"no free run folder name next to {base}")


def _found(run_dir: Path, names: tuple[str, ...]) -> list[str]:
    """``names`` present in ``run_dir`` or in its direct sub-folders (a demo's runs)."""
    folders = [run_dir, *(p for p in run_dir.iterdir() if p.is_dir())] if run_dir.is_dir() else []
    return [str((f / n).relative_to(run_dir)) for f in folders for n in names if (f / n).exists()]


def check_run_dir(run_dir: Path, resume: bool, config: str | None = None) -> None:
    """Refuse a folder that a new run (or a resume) would overwrite."""
    held = _found(run_dir, RUN_FILES + RESULTS)
    if not resume and held:
        source = Path(config).resolve() if config else None
        if source is not None and source.parent == run_dir.resolve():
            raise RunDirError(
                f"--out {run_dir} is the folder of the config {config}; the run would write over "
                "its files: choose another --out"
            )
        raise RunDirError(
            f"{run_dir} already holds a run ({', '.join(held[:4])}); pass --resume to "
            "continue it, or choose another --out"
        )
    lost = [name for name in _found(run_dir, RESULTS) if not (run_dir / "last.pt").exists()]
    if resume and lost:
        raise RunDirError(
            f"cannot resume {run_dir}: it has no last.pt but holds {', '.join(lost[:4])}, which "
            "a new run would overwrite; choose another --out"
        )


def _owner(lock: Path) -> tuple[int, str]:
    try:
        pid, host = lock.read_text().split()[:2]
        return int(pid), host
    except (OSError, ValueError):
        return -1, "?"  # being written, or unreadable: treat as held


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _take_lock(run_dir: Path) -> Path:
    lock = run_dir / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid, host = _owner(lock)
            if host == socket.gethostname() and pid > 0 and not _alive(pid):
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            raise RunDirError(
                f"{run_dir} is in use by process {pid} on {host} (lock file {lock}); wait for "
                "that run, or delete the lock file if it is gone"
            ) from None
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()} {socket.gethostname()}\n")
        return lock
    raise RunDirError(f"cannot lock {run_dir}: {lock} keeps reappearing")


@contextlib.contextmanager
def claim_run_dir(
    run_dir: Path,
    *,
    resume: bool = False,
    config: str | None = None,
    lock: bool = True,
    created: bool = False,
) -> Iterator[Path]:
    """Lock ``run_dir`` while the block runs (``lock=False``: only check it, e.g. on the
    ranks > 0 under torchrun) and check what it holds; then unlock. A folder created here (or
    by the caller: ``created``) that is still empty, the run having failed before writing,
    is removed."""
    created = created or not run_dir.exists()
    if lock:  # first: a folder in use is "in use", whatever it holds
        run_dir.mkdir(parents=True, exist_ok=True)
        lock_file = _take_lock(run_dir)
    try:
        check_run_dir(run_dir, resume, config)
        yield run_dir
    finally:
        if lock:
            lock_file.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only if empty
