"""Where spikedistill's warnings point: at the user's call into the library, not at the
library line that raised them (a Python user cannot act on ``modules_trainer.py:163``)."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
F = TypeVar("F", bound=Callable[..., Any])


def is_own(filename: str) -> bool:
    """Whether ``filename`` is a file of the spikedistill package."""
    return os.path.abspath(filename).startswith(PACKAGE_DIR + os.sep)


@contextlib.contextmanager
def own_warnings_at(filename: str, lineno: int) -> Iterator[None]:
    """Inside the block, spikedistill's warnings are shown at ``filename:lineno``; other
    libraries' warnings as they are."""
    with warnings.catch_warnings():
        show = warnings.showwarning

        def shown_there(message, category, at_file, at_line, file=None, line=None) -> None:
            if is_own(at_file):
                at_file, at_line, line = filename, lineno, None
            show(message, category, at_file, at_line, file, line)

        warnings.showwarning = shown_there
        yield


def warnings_at_caller(func: F) -> F:
    """``func``, its spikedistill warnings shown at the line that called it."""

    @functools.wraps(func)
    def called(*args: Any, **kwargs: Any) -> Any:
        caller = sys._getframe(1)
        with own_warnings_at(caller.f_code.co_filename, caller.f_lineno):
            return func(*args, **kwargs)

    return called  # type: ignore[return-value]
