"""Claiming a run directory: never two runs in one folder, never a run over another's files.

``claim_run_dir`` locks the folder while a run uses it (an exclusive ``flock`` on ``.lock``,
which holds the owner's pid and host; the kernel frees it when the owner dies, so a stale
lock file is taken over) and checks it: a new run refuses one that holds a run, ``--resume``
one whose results have no ``last.pt`` to continue from. Default folders get unique names.
"""

from __future__ import annotations

import contextlib
import fcntl
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


#: lock descriptors this process holds; a forked child (a DataLoader worker) closes its copies,
#: so that the lock ends with the run's process, not with its orphaned workers seconds later
_HELD: set[int] = set()


def _close_held_in_child() -> None:
    for fd in _HELD:
        os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


class RunDirError(SpikeDistillError):
    """A run directory that is in use or would be overwritten."""


#: how the messages name the run folder and the resume switch: the CLI's flags by default,
#: ``PYTHON_NAMES`` for ``spikedistill.train``
CLI_NAMES = {"out": "--out", "resume": "--resume"}
PYTHON_NAMES = {"out": "out=", "resume": "resume=True"}


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


def check_run_dir(
    run_dir: Path, resume: bool, config: str | None = None, names: dict[str, str] = CLI_NAMES
) -> None:
    """Refuse a folder that a new run (or a resume) would overwrite."""
    out = names["out"]
    starts_over = not resume or not (run_dir / "last.pt").exists()
    written = {(run_dir / name).resolve() for name in RUN_FILES}
    if config and starts_over and Path(config).resolve() in written:
        raise RunDirError(
            f"the run would write over its own config {config}: choose another {out}, or "
            "copy the config elsewhere"
        )
    held = _found(run_dir, RUN_FILES + RESULTS)
    if not resume and held:
        source = Path(config).resolve() if config else None
        if source is not None and source.parent == run_dir.resolve():
            raise RunDirError(
                f"{out} {run_dir} is the folder of the config {config}; the run would write "
                f"over its files: choose another {out}"
            )
        started = set(held) <= {"config.yaml", "log.txt"}  # it stopped before saving
        what = "the start of a run that saved nothing (see its log.txt)" if started else "a run"
        again = "start it over" if started else "continue it"
        raise RunDirError(
            f"{run_dir} already holds {what} ({', '.join(held[:4])}); pass {names['resume']} "
            f"to {again}, or choose another {out}"
        )
    lost = [name for name in _found(run_dir, RESULTS) if not (run_dir / "last.pt").exists()]
    if resume and lost:
        raise RunDirError(
            f"cannot resume {run_dir}: it has no last.pt but holds {', '.join(lost[:4])}, which "
            f"a new run would overwrite; choose another {out}"
        )


def _owner(lock: Path) -> str:
    try:
        pid, host = lock.read_text().split()[:2]
        return f"process {int(pid)} on {host}"
    except (OSError, ValueError):
        return "another process"  # still writing its pid


def _take_lock(run_dir: Path, names: dict[str, str]) -> int:
    """An exclusive ``flock`` on ``run_dir/.lock`` (its pid and host written in it); the
    kernel drops it when the process ends, however it ends, so a lock left by a killed run
    is free. Returns the open descriptor that holds it."""
    lock = run_dir / LOCK
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirError(
                f"{run_dir} is in use by {_owner(lock)} (lock file {lock}); wait for that run "
                f"to end, or choose another {names['out']}"
            ) from None
        try:
            current = os.stat(lock).st_ino
        except FileNotFoundError:
            current = None
        if current != os.fstat(fd).st_ino:  # its owner ended and removed it meanwhile
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        _HELD.add(fd)
        return fd


def _release_lock(run_dir: Path, fd: int) -> None:
    (run_dir / LOCK).unlink(missing_ok=True)  # before the unlock: no one locks a stale file
    _HELD.discard(fd)
    os.close(fd)


@contextlib.contextmanager
def claim_run_dir(
    run_dir: Path,
    *,
    resume: bool = False,
    config: str | None = None,
    lock: bool = True,
    created: bool = False,
    names: dict[str, str] = CLI_NAMES,
) -> Iterator[Path]:
    """Lock ``run_dir`` while the block runs (``lock=False``: only check it, e.g. on the
    ranks > 0 under torchrun) and check what it holds; then unlock. A folder created here (or
    by the caller: ``created``) that is still empty, the run having failed before writing,
    is removed. ``names``: how messages name the folder and resuming (``CLI_NAMES``)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{names['out']} {run_dir} is a file, not a folder")
    created = created or not run_dir.exists()
    if lock:  # first: a folder in use is "in use", whatever it holds
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = _take_lock(run_dir, names)
    try:
        check_run_dir(run_dir, resume, config, names)
        yield run_dir
    finally:
        if lock:
            _release_lock(run_dir, fd)
        if created:
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only if empty
