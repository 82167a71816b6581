"""Derived networks: how Rate-BP runs a model without changing it.

``derive(model, phase_of)`` returns a structural copy of ``model`` for one pass: every module
for which ``phase_of(m)`` names a phase class is replaced by a *phase copy*, an instance of a
subclass of both the phase class and ``type(m)`` that shares ``m``'s parameters, buffers and
hooks (so ``isinstance`` checks, gradients and running statistics see the same objects) and
whose ``forward`` is the phase's (run eagerly, also where ``m`` was ``.compile()``d);
``copy.original`` is ``m``. The containers above such modules are copied (same class, same
attributes) with children of their own, and so is ``model`` itself (a pass may set its
attributes, e.g. ``T``); every other module is the model's own. The model itself is never
modified: its modules, its ``T`` and its ``forward`` stay as they are.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch import nn

#: ``phase_of(m) -> (phase class, attributes of the copy)``, or ``None`` to keep ``m``
PhaseOf = Callable[[nn.Module], "tuple[type, dict[str, Any]] | None"]


@functools.cache
def _phase_class(phase: type, cls: type) -> type:
    """``phase`` mixed into ``cls``: ``phase.forward`` first, ``isinstance(copy, cls)`` kept."""
    return type(f"{phase.__name__}[{cls.__name__}]", (phase, cls), {})


def phase_copy(m: nn.Module, phase: type, **attrs: Any) -> nn.Module:
    """A copy of ``m`` of class ``phase + type(m)`` sharing its tensors and hooks, with
    ``original = m`` and ``attrs`` as plain attributes (never registered as submodules)."""
    cls = _phase_class(phase, type(m))
    out = cls.__new__(cls)
    out.__dict__.update(m.__dict__)
    out.__dict__["_modules"] = dict(m._modules)
    out.__dict__.update(original=m, _compiled_call_impl=None, **attrs)
    return out


def derive(model: nn.Module, phase_of: PhaseOf) -> nn.Module:
    """``model`` with the modules ``phase_of`` picks replaced by phase copies (module doc)."""
    return _derived(model, phase_of, {}, root=True)


def _derived(m: nn.Module, phase_of: PhaseOf, copies: dict[int, nn.Module], root: bool = False):
    """``m`` or its copy; ``copies`` maps the modules done so far (one copy per module). Not a
    closure: a recursive closure is a reference cycle, which would keep every copy, and the
    spike pass's records they hold, alive until the garbage collector runs."""
    if id(m) in copies:
        return copies[id(m)]
    phase = phase_of(m)
    if phase is not None:
        out = phase_copy(m, phase[0], **phase[1])
    else:
        children = {
            k: None if c is None else _derived(c, phase_of, copies) for k, c in m._modules.items()
        }
        if not root and all(children[k] is c for k, c in m._modules.items()):
            out = m
        else:  # the same class, its own children
            out = type(m).__new__(type(m))
            out.__dict__.update(m.__dict__)
            out.__dict__.update(_modules=children, _compiled_call_impl=None)
    copies[id(m)] = out
    return out
