"""Files written all at once: a reader (another process, a resumed run) never sees half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file here (``0o666`` less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replaced_atomically(
    path: str | os.PathLike, suffix: str = ".tmp", durable: bool = True
) -> Iterator[Path]:
    """A temporary path next to ``path`` for the block to write. If the block succeeds, the
    file gets the mode of a new file (``mkstemp`` makes it private), is flushed to disk
    (``durable``: file and folder, so a crash cannot leave an empty file) and renamed over
    ``path``; if it fails, the temporary file is removed and ``path`` is as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _new_file_mode())
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
