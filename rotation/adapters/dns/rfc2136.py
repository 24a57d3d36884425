"""DNS-01 through RFC 2136 dynamic updates signed with TSIG (BIND, Knot, PowerDNS, Windows DNS...).

``server`` receives the updates (usually the zone's primary). The zone is configured or found
by asking ``server`` for the SOA of the record name. ``wait_visible`` queries the zone's
authoritative servers directly (no resolver caches in between): ``propagation_servers`` when
set, otherwise the zone's NS (glue or the system resolver, port 53), falling back to
``server`` when the NS cannot be resolved. dnspython errors are translated here, once.
"""

from __future__ import annotations

import base64
import binascii
import logging
import socket
from collections.abc import Sequence

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update

from rotation.adapters.clock import SYSTEM_CLOCK
from rotation.adapters.dns.base import absolute
from rotation.core.clock import Clock
from rotation.core.errors import ConfigError, IssuerError

log = logging.getLogger(__name__)

DEFAULT_TTL = 60
QUERY_TIMEOUT = 5.0
TSIG_MIN_BYTES = 16  # 128 bits; tsig-keygen makes keys as long as the hash (32 bytes for hmac-sha256)
Address = tuple[str, int]


def parse_server(value: str, default_port: int = 53) -> Address:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address."""
    text = value.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    try:
        return host, int(port) if port else default_port
    except ValueError:
        raise ConfigError(f"DNS server {value!r}: port must be a number") from None


def _ip(host: str) -> str:
    try:
        return str(socket.getaddrinfo(host, None, proto=socket.IPPROTO_UDP)[0][4][0])
    except socket.gaierror as exc:
        raise IssuerError(f"DNS server {host}: cannot resolve ({exc.strerror})", retryable=True) from None


class RFC2136Provider:
    def __init__(
        self,
        name: str = "rfc2136",
        *,
        server: str,
        zone: str | None = None,
        tsig_key_name: str | None = None,
        tsig_algorithm: str = "hmac-sha256",
        tsig_secret: str | None = None,
        propagation_servers: Sequence[str] | None = None,
        ttl: int = DEFAULT_TTL,
        poll_interval: float = 1.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.name = name
        self.server = parse_server(server)
        self.zone = absolute(zone) if zone else None
        self.ttl = ttl
        self.poll_interval = poll_interval
        self.clock = clock
        self.propagation_servers = [parse_server(s) for s in propagation_servers or ()]
        self._keyring: dict | None = None
        self._keyname: dns.name.Name | None = None
        self._algorithm = dns.name.from_text(tsig_algorithm)
        if tsig_key_name:
            if not tsig_secret:
                raise ConfigError(f"DNS provider {name}: tsig_key_name {tsig_key_name!r} has no secret")
            self._keyname = dns.name.from_text(tsig_key_name)
            try:
                key_bytes = len(base64.b64decode(tsig_secret, validate=True))
                self._keyring = dns.tsigkeyring.from_text({tsig_key_name: (tsig_algorithm, tsig_secret)})
            except (binascii.Error, ValueError):  # do not echo the secret
                raise ConfigError(f"DNS provider {name}: TSIG secret of {tsig_key_name!r} is not base64") from None
            if key_bytes < TSIG_MIN_BYTES:  # a short HMAC key is guessed offline from one signed update
                raise ConfigError(f"DNS provider {name}: TSIG secret of {tsig_key_name!r} has {key_bytes} bytes, "
                                  f"at least {TSIG_MIN_BYTES} bytes are needed (`tsig-keygen` makes one)")
            try:  # dnspython looks the algorithm up only when it signs the first update (a KeyError there)
                dns.tsig.get_context(self._keyring[self._keyname])
            except (NotImplementedError, KeyError):
                raise ConfigError(f"DNS provider {name}: TSIG algorithm {tsig_algorithm!r} is not supported "
                                  "(hmac-sha256, hmac-sha384, hmac-sha512, hmac-sha224, hmac-sha1, hmac-md5)") from None
        self._zones: dict[str, str] = {}

    def __repr__(self) -> str:  # the TSIG secret stays out
        return f"RFC2136Provider(server={self._label(self.server)!r}, zone={self.zone!r})"

    @staticmethod
    def _label(address: Address) -> str:
        return f"{address[0]}:{address[1]}"

    # --- DNSProvider ---------------------------------------------------------------------

    def present(self, fqdn_record: str, value: str) -> None:
        self._update(fqdn_record, value, add=True)
        log.info("DNS: added TXT %s via %s", absolute(fqdn_record), self._label(self.server))

    def cleanup(self, fqdn_record: str, value: str) -> None:
        self._update(fqdn_record, value, add=False)
        log.info("DNS: removed TXT %s via %s", absolute(fqdn_record), self._label(self.server))

    def wait_visible(self, fqdn_record: str, value: str, timeout: float) -> None:
        record = absolute(fqdn_record)
        servers = self.authoritative_servers(self.zone_for(record))
        end = self.clock.monotonic() + timeout
        while True:
            missing = [s for s in servers if value not in self.txt_values(record, s)]
            if not missing:
                return
            if self.clock.monotonic() >= end:
                raise IssuerError(
                    f"DNS: TXT {record} not visible on {', '.join(self._label(s) for s in missing)} "
                    f"after {timeout:g}s", retryable=True)
            self.clock.sleep(self.poll_interval)

    # --- queries ---------------------------------------------------------------------------

    def zone_for(self, record: str) -> str:
        """The zone holding ``record``: configured, or the owner of the SOA ``server`` answers with."""
        if self.zone:
            return self.zone
        record = absolute(record)
        if record not in self._zones:
            response = self._query(record, dns.rdatatype.SOA, self.server)
            for rrset in (*response.answer, *response.authority):
                if rrset.rdtype == dns.rdatatype.SOA:
                    self._zones[record] = rrset.name.to_text().lower()
                    break
            else:
                raise IssuerError(f"DNS: {self._label(self.server)} is not authoritative for any zone above "
                                  f"{record} (no SOA); set dns.zone")
        return self._zones[record]

    def authoritative_servers(self, zone: str) -> list[Address]:
        if self.propagation_servers:
            return list(self.propagation_servers)
        response = self._query(zone, dns.rdatatype.NS, self.server)
        glue = {rrset.name.to_text().lower(): [r.address for r in rrset]
                for rrset in response.additional if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)}
        servers: list[Address] = []
        for rrset in response.answer:
            if rrset.rdtype != dns.rdatatype.NS:
                continue
            for ns in rrset:
                target = ns.target.to_text().lower()
                try:
                    addresses = glue.get(target) or [_ip(target)]
                except IssuerError:
                    log.warning("DNS: cannot resolve NS %s of %s", target, zone)
                    continue
                servers += [(address, 53) for address in addresses]
        if not servers:
            log.warning("DNS: no reachable NS for %s; checking %s only", zone, self._label(self.server))
            return [self.server]
        return servers

    def txt_values(self, record: str, server: Address) -> set[str]:
        response = self._query(absolute(record), dns.rdatatype.TXT, server)
        # TXT strings are bytes: another tool's value on the name need not be UTF-8 (ours are base64url)
        return {b"".join(r.strings).decode(errors="replace") for rrset in response.answer
                if rrset.rdtype == dns.rdatatype.TXT for r in rrset}

    def _query(self, qname: str, rdtype: dns.rdatatype.RdataType, server: Address) -> dns.message.Message:
        request = dns.message.make_query(qname, rdtype)
        request.flags &= ~dns.flags.RD
        host = _ip(server[0])
        try:
            response, _ = dns.query.udp_with_fallback(request, host, port=server[1], timeout=QUERY_TIMEOUT)
        except (dns.exception.DNSException, OSError) as exc:
            raise IssuerError(f"DNS: query {qname} {dns.rdatatype.to_text(rdtype)} at {self._label(server)} "
                              f"failed: {exc or type(exc).__name__}", retryable=True) from exc
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise IssuerError(f"DNS: query {qname} {dns.rdatatype.to_text(rdtype)} at {self._label(server)} "
                              f"answered {dns.rcode.to_text(response.rcode())}", retryable=True)
        return response

    # --- updates ---------------------------------------------------------------------------

    def _update(self, fqdn_record: str, value: str, *, add: bool) -> None:
        record = absolute(fqdn_record)
        zone = self.zone_for(record)
        if not dns.name.from_text(record).is_subdomain(dns.name.from_text(zone)):
            raise IssuerError(f"DNS: {record} is not in zone {zone}")
        update = dns.update.UpdateMessage(zone, keyring=self._keyring, keyname=self._keyname,
                                          keyalgorithm=self._algorithm)
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, f'"{value}"')
        if add:
            update.add(record, self.ttl, rdata)
        else:
            update.delete(record, rdata)
        verb = "add" if add else "remove"
        host = _ip(self.server[0])
        try:
            response = dns.query.tcp(update, host, port=self.server[1], timeout=QUERY_TIMEOUT)
        except dns.tsig.PeerError as exc:  # the server rejected our signature (BADSIG/BADKEY/BADTIME)
            raise IssuerError(f"DNS: {self._label(self.server)} refused to {verb} TXT {record}: TSIG "
                              f"{type(exc).__name__} (wrong key name, secret or algorithm?)") from exc
        except (dns.exception.DNSException, OSError) as exc:
            raise IssuerError(f"DNS: cannot {verb} TXT {record} at {self._label(self.server)}: "
                              f"{exc or type(exc).__name__}", retryable=True) from exc
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            raise IssuerError(f"DNS: {self._label(self.server)} refused to {verb} TXT {record}: "
                              f"{dns.rcode.to_text(rcode)}", retryable=rcode == dns.rcode.SERVFAIL)


__all__ = ["RFC2136Provider", "parse_server"]
