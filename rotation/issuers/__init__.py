"""Issuer plug-ins. Importing this package registers the built-in issuer types."""

from rotation.issuers import files, internal_ca
from rotation.issuers.base import (
    Issuer,
    IssuerFactory,
    issuer_factory,
    register_issuer_type,
    registered_issuer_types,
)
from rotation.issuers.files import FileIssuer
from rotation.issuers.internal_ca import InternalCA, init_ca

__all__ = [
    "FileIssuer",
    "InternalCA",
    "Issuer",
    "IssuerFactory",
    "files",
    "init_ca",
    "internal_ca",
    "issuer_factory",
    "register_issuer_type",
    "registered_issuer_types",
]
