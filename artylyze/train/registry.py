"""A tiny registry of named factories, as timm does for models: register, list, create."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from artylyze.errors import ArtyLyzeError


class RegistryError(ArtyLyzeError):
    """An unknown or duplicate name in a registry."""


class Registry:
    """Named factories; unknown names raise an error that repeats what was asked."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise RegistryError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = fn
            return fn

        return add

    def list(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def create(self, name: str, **kwargs: Any) -> Any:
        if name not in self._entries:
            raise RegistryError(f"unknown {self.kind} {name!r}; choose one of {self.list()}")
        return self._entries[name](**kwargs)
