"""A restricted unpickler for the CIFAR "python version" batches.

Those files are (Python 2) pickles, so reading them cannot avoid the pickle machinery; to keep
that safe this unpickler resolves *no* global except the handful that plain containers and numpy
arrays need: dicts, lists, bytes, str and int come from pickle opcodes, and the only callables
reachable are numpy's array/dtype reconstruction and a latin-1 ``_codecs.encode`` (used by
protocol-2 pickles written by Python 3 to store bytes). Anything else raises ``DataError``.
"""

from __future__ import annotations

import pickle
from typing import Any, BinaryIO

import numpy as np

from ..errors import DataError

_reconstruct = np.empty(0).__reduce__()[0]  # numpy's array rebuild helper, whatever its module
_frombuffer = np.empty(1).__reduce_ex__(5)[0]  # protocol-5 array rebuild helper


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` restricted to what pickle protocol 2 needs: ``str`` -> latin-1 bytes."""
    if not isinstance(text, str) or encoding.replace("_", "-").lower() not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is only allowed for latin-1 text")
    return text.encode("latin-1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that only resolves the globals in ``_ALLOWED``."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None


def load_restricted_pickle(f: BinaryIO, name: str) -> Any:
    """Unpickle ``f`` (Python 2 strings decoded as latin-1) with :class:`RestrictedUnpickler`.

    Any failure, including a forbidden global, raises ``DataError`` naming ``name``.
    """
    try:
        obj = RestrictedUnpickler(f, encoding="latin1").load()
    except Exception as e:  # a corrupt pickle can fail in many ways; all mean bad data
        reason = f"{type(e).__name__}: {e}"
        raise DataError(f"{name}: not a readable CIFAR batch pickle ({reason})") from e
    return obj
