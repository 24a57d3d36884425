"""The DNS provider interface DNS-01 needs, and the registry of provider types.

A provider publishes and removes TXT records and can tell when a value is visible where the
CA will look. ``present``/``cleanup`` take the full record name (``_acme-challenge.<host>``,
with or without the trailing dot) and one value: several values may coexist on one name (a
wildcard and its base name share ``_acme-challenge.<fqdn>``), so ``cleanup`` removes only
its own value. Failures are ``IssuerError`` (the DNS side of issuing a certificate).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class DNSProvider(Protocol):
    name: str

    def present(self, fqdn_record: str, value: str) -> None:
        """Add ``value`` to the TXT record set of ``fqdn_record``."""
        ...

    def cleanup(self, fqdn_record: str, value: str) -> None:
        """Remove ``value`` (only that one) from the TXT record set of ``fqdn_record``."""
        ...

    def wait_visible(self, fqdn_record: str, value: str, timeout: float) -> None:
        """Return once ``value`` is served by the zone's authoritative servers; IssuerError after ``timeout``."""
        ...


def absolute(name: str) -> str:
    """``name`` with exactly one trailing dot, lower case."""
    return name.rstrip(".").lower() + "."


__all__ = ["DNSProvider", "absolute"]
