"""Registries of plug-ins by name (issuer types, DNS providers): explicit, no entry-point magic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from rotation.core.errors import ConfigError

F = TypeVar("F", bound=Callable[..., object])


class Registry(Generic[F]):
    def __init__(self, kind: str, plural: str) -> None:
        self.kind = kind  # "issuer type", "DNS provider": used in error messages
        self.plural = plural
        self._factories: dict[str, F] = {}

    def register(self, name: str, factory: F) -> None:
        """Make ``factory`` available as ``name``; registering the same factory again is harmless."""
        existing = self._factories.get(name)
        if existing is not None and existing is not factory:
            raise ValueError(f"{self.kind} {name!r} is already registered to {existing!r}")
        self._factories[name] = factory

    def get(self, name: str) -> F:
        try:
            return self._factories[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise ConfigError(f"unknown {self.kind} {name!r}; known {self.plural}: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._factories)
