"""Output files that appear together or not at all (a report, a benchmark's table and plot)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _nearest_existing(folder: Path) -> Path:
    for path in (folder, *folder.parents):
        if path.is_dir():
            return path
    return Path.cwd()


@contextlib.contextmanager
def staged_files(folder: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder to write the outputs into. When the block ends without an error its
    files move into ``folder`` (created if needed, a file of the same name replaced); on an
    error they are deleted and ``folder`` is left as it was."""
    folder = Path(folder)
    stage = Path(tempfile.mkdtemp(prefix=".spikedistill-", dir=_nearest_existing(folder)))
    try:
        yield stage
        folder.mkdir(parents=True, exist_ok=True)
        for path in sorted(stage.iterdir()):
            os.replace(path, folder / path.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
