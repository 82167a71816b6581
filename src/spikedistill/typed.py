"""Values checked against type annotations: config dataclasses from plain dicts, and the
free-form option dicts handed to a callable (a model, a method, a dataset), checked against
its signature before anything runs. Every mistake is one ``ConfigError`` naming the key."""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import functools
import inspect
import math
import types
import typing
from collections.abc import Callable, Iterable
from typing import Annotated, Any, TypeVar

from .errors import ConfigError

C = TypeVar("C")
INT_RANGE = (-(2**63), 2**63)  # what torch and numpy take as an integer
_LISTS = (list, tuple, collections.abc.Sequence)
_MAPPINGS = (dict, collections.abc.Mapping)


@dataclasses.dataclass(frozen=True)
class Bounds:
    """A number's range, checked with its annotation: ``Annotated[float, Bounds(gt=0)]``;
    ``why`` is added to the error."""

    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    why: str = ""

    def __str__(self) -> str:
        parts = [(">", self.gt), (">=", self.ge), ("<=", self.le)]
        return " and ".join(f"{op} {bound:g}" for op, bound in parts if bound is not None)

    def check(self, value: float, path: str) -> None:
        if (
            (self.gt is not None and not value > self.gt)
            or (self.ge is not None and not value >= self.ge)
            or (self.le is not None and not value <= self.le)
        ):
            why = f" ({self.why})" if self.why else ""
            raise ConfigError(f"{path} must be {self}{why}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class MinItems:
    """A list's least length, checked with its annotation: ``Annotated[list[str], MinItems(1)]``."""

    n: int

    def __str__(self) -> str:
        return f"at least {self.n} item" + "s" * (self.n != 1)

    def check(self, value: Any, path: str) -> None:
        if len(value) < self.n:
            raise ConfigError(f"{path} must have {self}, got {value!r}")


Positive = Annotated[float, Bounds(gt=0)]
Fraction = Annotated[float, Bounds(ge=0, le=1)]
Count = Annotated[int, Bounds(ge=0)]
Weight = Annotated[float, Bounds(ge=0, why="a negative weight would maximise the loss")]
_LIMITS = (Bounds, MinItems)


def limit_of(tp: Any) -> Bounds | MinItems | None:
    """The ``Bounds`` or ``MinItems`` of an annotation (also inside ``X | None``), else ``None``."""
    if typing.get_origin(tp) is Annotated:
        return next((m for m in tp.__metadata__ if isinstance(m, _LIMITS)), None)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next(filter(None, map(limit_of, typing.get_args(tp))), None)
    return None


def _constrained(tp: Any) -> bool:
    """Whether an annotation names choices (``Literal``) or a limit, also inside a union."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(map(_constrained, typing.get_args(tp)))
    return typing.get_origin(tp) is typing.Literal or limit_of(tp) is not None


def checked_arguments(func: Callable[..., Any], owner: str) -> Callable[..., Any]:
    """``func`` that first checks (``coerce``) each argument annotated with choices or a limit,
    naming ``"<owner> <parameter>"`` in the error: a Python call gets the config's messages."""
    signature = inspect.signature(func)
    hints = parameter_types(func)
    constrained = {name: tp for name, tp in hints.items() if _constrained(tp)}
    parameters = signature.parameters.values()
    options = [p.name for p in parameters if p.default is not p.empty]
    any_keyword = any(p.kind is p.VAR_KEYWORD for p in parameters)

    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        unknown = [k for k in kwargs if k not in signature.parameters]
        if unknown and not any_keyword:
            raise _unknown_key(unknown[0], options, "", "option", repr(owner))
        bound = signature.bind(*args, **kwargs)
        for name, value in bound.arguments.items():
            if name in constrained:
                bound.arguments[name] = coerce(value, constrained[name], f"{owner} {name}")
        return func(*bound.args, **bound.kwargs)

    return checked


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce_union(value: Any, args: tuple[Any, ...], path: str) -> Any:
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return coerce(value, arg, path)
        except ConfigError as err:
            errors.append(str(err))
    raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: invalid value {value!r}")


def _coerce_scalar(value: Any, tp: Any, path: str) -> Any:
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value) if abs(value) < 2**1023 else math.inf
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
    if not isinstance(value, tp):
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
    if tp is float and not math.isfinite(value):
        raise ConfigError(f"{path}: expected a finite number, got {value!r}")
    if tp is int and not INT_RANGE[0] <= value < INT_RANGE[1]:
        raise ConfigError(f"{path}: {value} is out of range")
    return value


def coerce(value: Any, tp: Any, path: str) -> Any:
    """``value`` checked against annotation ``tp`` (ints are accepted for floats; floats must
    be finite); dataclasses are built from mappings. Unknown annotations accept anything."""
    if tp is Any:  # a class since Python 3.11, which isinstance refuses
        return value
    origin = typing.get_origin(tp)
    if origin is Annotated:
        value = coerce(value, typing.get_args(tp)[0], path)
        for limit in (m for m in tp.__metadata__ if isinstance(m, _LIMITS)):
            limit.check(value, path)
        return value
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, typing.get_args(tp), path)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(map(repr, typing.get_args(tp)))
            raise ConfigError(f"{path}: expected one of {choices}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return from_dict(tp, value, path)
    if origin in _LISTS or tp in _LISTS:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:  # tuple[int, int]: fixed
            if len(value) != len(args):
                raise ConfigError(f"{path}: expected {len(args)} items, got {value!r}")
            item_types = list(args)
        else:
            item_types = [args[0] if args else Any] * len(value)
        pairs = enumerate(zip(value, item_types, strict=True))
        items = [coerce(v, t, f"{path}[{i}]") for i, (v, t) in pairs]
        return tuple(items) if origin is tuple else items
    if origin in _MAPPINGS or tp in _MAPPINGS:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        key_type, value_type = typing.get_args(tp) or (Any, Any)
        return {
            coerce(k, key_type, f"{path} key {k!r}"): coerce(v, value_type, f"{path}.{k}")
            for k, v in value.items()
        }
    if tp in (int, float, str, bool):
        return _coerce_scalar(value, tp, path)
    if isinstance(tp, type) and tp is not object and not isinstance(value, tp):
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
    return value


def _unknown_key(
    key: Any, valid: Iterable[str], path: str, what: str, owner: str = ""
) -> ConfigError:
    valid = list(valid)
    close = difflib.get_close_matches(str(key), valid, n=1)
    dotted = f"{path}.{key}" if path else str(key)
    hint = f"; did you mean {(path + '.' if path else '') + close[0]!r}?" if close else ""
    known = ", ".join(valid) or "none"
    owner = f" of {owner}" if owner else ""
    return ConfigError(f"unknown {what} {dotted!r}{owner}{hint} (valid here: {known})")


def from_dict(cls: type[C], data: dict[str, Any], path: str = "") -> C:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise _unknown_key(key, fields, path, "config key")
        kwargs[key] = coerce(value, hints[key], f"{path}.{key}" if path else str(key))
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


def parameter_types(func: Callable[..., Any], skip: Iterable[str] = ()) -> dict[str, Any]:
    """The keyword parameters of ``func`` (a function or a class: its ``__init__``) with their
    annotations (``Any`` where there is none); ``*args``/``**kwargs`` and ``skip`` left out."""
    target = func.__init__ if isinstance(func, type) else func  # type: ignore[misc]
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception:  # an annotation that does not resolve: check names only
        hints = {}
    params = inspect.signature(target).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    skipped = {"self", *skip}
    return {
        p.name: hints.get(p.name, Any) for p in params if p.kind in kinds and p.name not in skipped
    }


def check_options(
    options: Any, types_: dict[str, Any], path: str, owner: str = ""
) -> dict[str, Any]:
    """``options`` (a free-form dict of the config) checked against ``types_`` (see
    ``parameter_types``): a mapping, known names only, each value of its annotated type.
    ``owner`` names what takes them in the error, e.g. ``"model 'vgg11'"``."""
    if not isinstance(options, dict):
        raise ConfigError(f"{path}: expected a mapping, got {options!r}")
    checked = {}
    for key, value in options.items():
        if key not in types_:
            raise _unknown_key(key, types_, path, "option", owner)
        checked[key] = coerce(value, types_[key], f"{path}.{key}")
    return checked
