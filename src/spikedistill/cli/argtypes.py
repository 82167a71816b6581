"""Checks of command-line arguments shared by ``eval``, ``report`` and ``bench``.

argparse parses the types; these check the values in the command itself, before it reads data
or writes anything, and raise one ``ConfigError`` naming the flag (so ``main`` returns 2).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def _attribute(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def require_positive(args: argparse.Namespace, *flags: str) -> None:
    """Every value of ``flags`` (``"--batch-size"``; a list: each item; ``None``: unset) is a
    finite number > 0: an integer >= 1 for ``int`` arguments."""
    for flag in flags:
        value = getattr(args, _attribute(flag))
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            if isinstance(item, int):
                if item < 1:
                    raise ConfigError(f"{flag} must be an integer >= 1, got {item}")
            elif not (math.isfinite(item) and item > 0):
                raise ConfigError(f"{flag} must be a finite number > 0, got {item}")


def json_object(text: str | None, flag: str) -> dict[str, Any]:
    """``text`` parsed as a JSON object (``None``: ``{}``)."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{flag} is not valid JSON ({err.msg} at column {err.colno}): {text!r}"
        ) from None
    except (ValueError, RecursionError) as err:  # numbers of > 4300 digits, deep nesting
        raise ConfigError(f"{flag} cannot be read ({type(err).__name__}: {err})") from None
    if not isinstance(value, dict):
        raise ConfigError(
            f"{flag} must be a JSON object like '{{\"width\": 16}}', got {type(value).__name__}"
        )
    return value


def _writable_folder(folder: Path, path: Path, flag: str) -> None:
    """``folder``, or the nearest existing folder above it, is a writable folder (not a file)."""
    for existing in (folder.absolute(), *folder.absolute().parents):
        if existing.exists() or existing.is_symlink():
            if not existing.is_dir():
                raise ConfigError(f"{flag} {str(path)!r}: {str(existing)!r} is not a folder")
            if not os.access(existing, os.W_OK | os.X_OK):
                raise ConfigError(f"{flag} {str(path)!r}: {str(existing)!r} is not writable")
            return


def output_folder(text: str, flag: str) -> Path:
    """``text`` as a folder the command can create or write into."""
    path = Path(text)
    _writable_folder(path, path, flag)
    return path


def output_stem(text: str, flag: str, example: str = "results/bench") -> Path:
    """``text`` as the name of an output file (or the stem of ``STEM.md``, ``STEM.csv``, ...):
    it needs a name; the error shows ``example``."""
    path = Path(text)
    if path.name in ("", ".", "..") or text.endswith(os.sep):
        raise ConfigError(f"{flag} {text!r} needs a file name, e.g. {flag} {example}")
    _writable_folder(path.parent, path, flag)
    return path
