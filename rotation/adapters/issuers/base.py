"""The issuer interface.

Like cert-manager's issuers, an issuer only sets itself up (``check``) and signs (``issue``); it
never pushes, probes or writes records: the pipeline does that. It also says which trust anchors
its chains lead to, and, optionally, when its CA wants a certificate renewed (ACME Renewal
Information, RFC 9773): ``renewal_info`` returns None when the issuer never offers one.
Which types exist: ``registry``; building one: ``factory``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from rotation.core.model import CertRequest, IssuedCert, RenewalInfo


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

    @property
    def public_roots(self) -> bool:
        """True when the chains lead to the system's roots (a public CA) rather than to ``trust_anchors``."""
        ...

    def renewal_info(self, leaf_pem: str) -> RenewalInfo | None:
        """When the CA wants ``leaf_pem`` renewed (UTC) and when to ask again; None when this issuer never
        offers a renewal window (nothing to ask)."""
        ...


__all__ = ["Issuer"]
