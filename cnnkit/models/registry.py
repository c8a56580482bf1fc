"""One small generic registry: names map to builders, and mistakes are loud.

Modelled on torchvision's model registry: registering a name twice raises, and asking
for a name that does not exist lists the names that do.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from cnnkit.errors import CnnkitError

T = TypeVar("T")


class UnknownNameError(CnnkitError, KeyError):
    """Raised by Registry.get for a name nobody registered."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to objects (usually builder functions).

    Instances are created by the module that owns them (e.g. cnnkit.models), never as a
    hidden module-level default, so tests can build their own.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@registry.register("resnet18")``; a duplicate name raises ValueError."""

        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)
