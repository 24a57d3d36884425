"""Issuer plug-ins. Importing this package registers the built-in issuer types."""

from rotation.adapters.issuers import acme, files, internal_ca
from rotation.adapters.issuers.acme.issuer import AcmeIssuer
from rotation.adapters.issuers.base import (
    Issuer,
    IssuerFactory,
    issuer_factory,
    register_issuer_type,
    registered_issuer_types,
)
from rotation.adapters.issuers.files import FileIssuer
from rotation.adapters.issuers.internal_ca import InternalCA, init_ca

__all__ = [
    "AcmeIssuer",
    "FileIssuer",
    "InternalCA",
    "Issuer",
    "IssuerFactory",
    "acme",
    "files",
    "init_ca",
    "internal_ca",
    "issuer_factory",
    "register_issuer_type",
    "registered_issuer_types",
]
