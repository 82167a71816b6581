"""A tiny name -> object registry used for models, neurons, surrogates, datasets and methods."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; ``register`` doubles as a decorator.

    >>> models = Registry("model")
    >>> @models.register("tiny")
    ... def tiny(): ...
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._unlisted: set[str] = set()

    def register(self, name: str | None = None, *, listed: bool = True) -> Callable[[T], T]:
        """``listed=False``: the name resolves, but ``names()`` and error hints leave it out
        (an entry users do not choose, e.g. the data of a run trained from Python)."""

        def decorator(obj: T) -> T:
            key = name or obj.__name__  # type: ignore[attr-defined]
            if key in self._items:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._items[key] = obj
            if not listed:
                self._unlisted.add(key)
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Valid: {', '.join(self.names())}"

    def names(self) -> list[str]:
        """The listed names, sorted."""
        return sorted(set(self._items) - self._unlisted)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
