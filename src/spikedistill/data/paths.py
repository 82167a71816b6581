"""Where datasets live on disk."""

from __future__ import annotations

import os
from pathlib import Path

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


def how_to_get_data(dataset: str) -> str:
    """The hint appended to every "data not found" error."""
    return (
        f"To get it: download it (`download=True`, on the command line `--download`), "
        f"or place the files in one of those folders yourself, or point {ENV_VAR} "
        f"(or the data root option) at the folder that holds the {dataset} files."
    )
