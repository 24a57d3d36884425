"""Issuers built once, from explicit dependencies, and kept while their settings and files stay the same.

The context holds one ``IssuerFactory`` per process: a worker's rotations and scans (ARI) of the
same certificate reuse one issuer (an internal CA's parsed key, an ACME issuer's DNS provider)
instead of building it per call. An edited inventory entry, secret or file gets a new one.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rotation.adapters.issuers.base import Issuer
from rotation.adapters.issuers.registry import IssuerDeps, builder
from rotation.adapters.secrets import SecretStore
from rotation.config import Inventory, IssuerSettings
from rotation.core.clock import Clock


def build_issuer(name: str, settings: IssuerSettings, *, secrets: SecretStore | None, clock: Clock) -> Issuer:
    """The issuer ``settings`` describe (its secrets read now, from the environment or files)."""
    kwargs = settings.factory_kwargs(f"issuers.{name}")
    return builder(settings.type)(name, settings, kwargs, IssuerDeps(secrets, clock))


class IssuerFactory:
    """One issuer per inventory name, rebuilt when its settings, secrets or files change."""

    def __init__(self, secrets: Callable[[], SecretStore | None], clock: Clock) -> None:
        self._secrets = secrets  # read when an issuer is built: a missing key fails that rotation only
        self._clock = clock
        self._built: dict[str, tuple[str, Issuer]] = {}
        self._lock = threading.Lock()

    def issuer(self, inventory: Inventory, name: str) -> Issuer:
        settings = inventory.issuers[name]
        stamp = _stamp(name, settings)
        with self._lock:
            known = self._built.get(name)
            if known is not None and known[0] == stamp:
                return known[1]
        issuer = build_issuer(name, settings, secrets=self._secrets(), clock=self._clock)
        with self._lock:
            self._built[name] = (stamp, issuer)
        return issuer


def _stamp(name: str, settings: IssuerSettings) -> str:
    """What the issuer was built from: its settings, the secrets they name and the files' mtimes."""
    kwargs = settings.factory_kwargs(f"issuers.{name}")
    files = sorted({str(p) for p in _paths(settings.model_dump())})
    parts = [settings.model_dump_json(), repr(sorted(kwargs.items(), key=lambda kv: kv[0])),
             *(f"{p}:{_mtime(p)}" for p in files)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _paths(value: Any) -> list[Path]:
    if isinstance(value, Path):
        return [value]
    if isinstance(value, dict):
        return [p for v in value.values() for p in _paths(v)]
    if isinstance(value, list | tuple):
        return [p for v in value for p in _paths(v)]
    return []


def _mtime(path: str) -> int:
    try:
        return Path(path).stat().st_mtime_ns
    except OSError:
        return -1


__all__ = ["IssuerFactory", "build_issuer"]
