"""Your own code, named ``package.module:callable`` in a config (models, datasets, methods)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from .errors import ConfigError, described, first_line


def is_external(name: str) -> bool:
    """Whether a config's name names code outside the package's registries (it has a ``:``:
    ``package.module:callable``, ``torchvision:NAME``, ``timm:NAME``)."""
    return ":" in name


def find_callable(spec: str, what: str = "model") -> Callable[..., Any]:
    """The object ``package.module:attribute.path`` names; ``what`` ("model", "dataset")
    starts the error messages."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"{what} {spec!r}: write package.module:callable")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"{what} {spec!r}: cannot import {module_name!r} ({first_line(err)}); is it on "
            "PYTHONPATH or installed?"
        ) from None
    except Exception as err:  # your module's own error (--debug shows its traceback)
        raise ConfigError(
            f"{what} {spec!r}: importing {module_name!r} raised {described(err)}"
        ) from err
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{what} {spec!r}: {module_name!r} has no attribute {attribute!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{what} {spec!r}: {attribute!r} is not callable")
    return obj


def takes_any_keyword(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` has a ``**kwargs`` parameter (a builtin without a signature: no)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is p.VAR_KEYWORD for p in parameters)


def accepted(fn: Callable[..., Any], given: dict[str, Any]) -> dict[str, Any]:
    """The items of ``given`` that ``fn``'s signature takes by keyword."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature: pass none of them
        return {}
    if takes_any_keyword(fn):
        return dict(given)
    return {k: v for k, v in given.items() if k in parameters}
