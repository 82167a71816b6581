"""Where datasets live on disk, and the hint and text reader shared by the dataset builders."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError

ENV_VAR = "SPIKEDISTILL_DATA"


def resolve_data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data folder: ``root`` if given, else ``$SPIKEDISTILL_DATA``, else
    ``~/.cache/spikedistill/data``. The folder is not created."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "spikedistill" / "data"


def how_to_get_data(dataset: str, *, downloadable: bool = True) -> str:
    """The hint appended to every "data not found" error."""
    fetch = (
        "download it (`data.download=true` in the config or as a `train` override; "
        "`download=True` in Python), or "
        if downloadable
        else ""
    )
    return (
        f"To get it: {fetch}place the files in one of those folders yourself, or point "
        f"{ENV_VAR} (or `--data-dir` / `data.root`) at the folder that holds the {dataset} files."
    )


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path``; ``DataError`` naming the file if it cannot be read or
    decoded (``what`` says what the file is, e.g. "gesture labels")."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot read {what}: {e}") from e
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path}: {what} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
            f"{e.start}); a corrupt or binary file?"
        ) from None
