"""DNS providers for ACME DNS-01. Importing this package registers the built-in ones (rfc2136)."""

from rotation.adapters.dns import rfc2136
from rotation.adapters.dns.base import DNSProvider, build_dns_provider, register_dns_provider
from rotation.adapters.dns.rfc2136 import RFC2136Provider

__all__ = ["DNSProvider", "RFC2136Provider", "build_dns_provider", "register_dns_provider", "rfc2136"]
