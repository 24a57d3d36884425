"""The DNS providers DNS-01 can publish through, listed here (no registration at import time).

A new provider is a module here implementing ``base.DNSProvider`` and a line in ``PROVIDERS``
(its settings come through ``dns:`` of an ACME issuer: ``rotation.config.issuers.AcmeDNSSettings``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rotation.adapters.dns.base import DNSProvider
from rotation.core.errors import ConfigError


def _rfc2136(**options: Any) -> DNSProvider:
    from rotation.adapters.dns.rfc2136 import RFC2136Provider

    return RFC2136Provider(**options)


PROVIDERS: dict[str, Callable[..., DNSProvider]] = {
    "rfc2136": _rfc2136,
}


def build_dns_provider(provider: str, **options: Any) -> DNSProvider:
    try:
        factory = PROVIDERS[provider]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigError(f"unknown DNS provider {provider!r}; known providers: {known}") from None
    return factory(**options)


__all__ = ["PROVIDERS", "build_dns_provider"]
