"""Name -> class registries, filled by decorators when the package's modules are imported.

A new method or encoder is one new file: its module registers itself, and `discover` imports every
module of the package so the CLI, the benchmarks and the tests all enumerate the same list.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, TypeVar

from selfsup.errors import unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str):
        self.kind, self.package = kind, package
        self._items: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = item
            return item
        return add

    def discover(self) -> None:
        """Import every module of the package once, so that their decorators run."""
        if not self._discovered:
            pkg = importlib.import_module(self.package)
            for info in pkgutil.iter_modules(pkg.__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{info.name}")
            self._discovered = True

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._items)

    def get(self, name: str) -> T:
        self.discover()
        if name not in self._items:
            raise unknown_name(self.kind, name, list(self._items))
        return self._items[name]
