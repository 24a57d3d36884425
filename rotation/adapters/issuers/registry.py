"""The built-in issuer types, listed here: ``type:`` in the inventory -> how to build one.

An explicit table, not registration at import time: importing this module imports no issuer (the
ACME client loads only when an ACME issuer is built), and what exists is readable in one place.
A new issuer type is a module here, a settings class in ``rotation.config.issuers`` and a line in
``BUILDERS``; the contract tests (``tests/unit/test_issuers.py``) then run against it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rotation.adapters.issuers.base import Issuer
from rotation.adapters.secrets import SecretStore
from rotation.config.issuers import AcmeSettings, FilesSettings, InternalCASettings
from rotation.core.clock import Clock
from rotation.core.errors import ConfigError


@dataclass(frozen=True)
class IssuerDeps:
    """What an issuer may be given besides its settings: never looked up by the issuer itself."""

    secrets: SecretStore | None  # ACME accounts are kept encrypted here
    clock: Clock


Builder = Callable[[str, Any, dict[str, Any], IssuerDeps], Issuer]


def _internal_ca(name: str, settings: InternalCASettings, kwargs: dict[str, Any], deps: IssuerDeps) -> Issuer:
    from rotation.adapters.issuers.internal_ca import InternalCA

    return InternalCA(name=name, clock=deps.clock.now, **kwargs)


def _files(name: str, settings: FilesSettings, kwargs: dict[str, Any], deps: IssuerDeps) -> Issuer:
    from rotation.adapters.issuers.files import FileIssuer

    return FileIssuer(name=name, **kwargs)


def _acme(name: str, settings: AcmeSettings, kwargs: dict[str, Any], deps: IssuerDeps) -> Issuer:
    from rotation.adapters.issuers.acme.issuer import AcmeIssuer

    return AcmeIssuer(name=name, secret_store=deps.secrets, clock=deps.clock, **kwargs)


BUILDERS: dict[str, Builder] = {
    "internal_ca": _internal_ca,
    "files": _files,
    "acme": _acme,
}


def builder(type_name: str) -> Builder:
    try:
        return BUILDERS[type_name]
    except KeyError:
        raise ConfigError(f"unknown issuer type {type_name!r}; known types: {', '.join(sorted(BUILDERS))}") from None


__all__ = ["BUILDERS", "IssuerDeps", "builder"]
