"""The issuer plug-in interface and its explicit registry.

Like cert-manager's issuers, a plug-in only sets itself up (``check``) and signs (``issue``).
It never pushes, probes or writes records: the pipeline does that.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from rotation.adapters.plugins import Registry
from rotation.core.errors import ConfigError
from rotation.core.model import CertRequest, IssuedCert


@runtime_checkable
class Issuer(Protocol):
    name: str

    def check(self) -> None:
        """Raise ConfigError/IssuerError when unusable (files, passwords, reachability)."""
        ...

    def issue(self, request: CertRequest) -> IssuedCert:
        """A fresh certificate (and key) for ``request``."""
        ...

    def trust_anchors(self) -> list[str]:
        """PEM CA certificates that chains from this issuer lead to; may be empty."""
        ...


IssuerFactory = Callable[..., Issuer]

_REGISTRY: Registry[IssuerFactory] = Registry("issuer type", "types")


def register_issuer_type(type_name: str, factory: IssuerFactory) -> None:
    """Make ``factory`` available as ``type_name``; factories take keyword arguments only."""
    _REGISTRY.register(type_name, factory)


def issuer_factory(type_name: str) -> IssuerFactory:
    return _REGISTRY.get(type_name)


def registered_issuer_types() -> list[str]:
    return _REGISTRY.names()


def read_issuer_file(path: Path, *, what: str) -> bytes:
    """The bytes of a file an issuer is configured with; ConfigError naming it otherwise."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: {what} is a directory, expected a file") from None
    except PermissionError:
        raise ConfigError(f"{path}: {what} file is not readable (permission denied)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} file ({exc.strerror})") from None


__all__ = [
    "Issuer",
    "IssuerFactory",
    "issuer_factory",
    "read_issuer_file",
    "register_issuer_type",
    "registered_issuer_types",
]
