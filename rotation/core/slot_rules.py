"""Which rules a certificate meets depends on the slot it fills (pure).

Public CAs no longer issue what RS documents for every certificate (sheet
``rs-8x-and-public-cas-2026.md`` §1.5): Let's Encrypt issues no clientAuth EKU since 8 July 2026, and
its ``tlsserver``/``shortlived`` profiles have no CN and no keyEncipherment. So the pre-push rules are
per role:

* **server** slots (``cm``, ``api``, ``proxy``, ``metrics_exporter``, a database's own ``db:<key>``,
  ``sso_service``): a listener presents them, so they need serverAuth;
* **client** slots (``syncer``, ``ldap_client``, ``rest_client``): RS presents them as a TLS client, so
  they need clientAuth;
* **internode** (``ccs_internode_encryption``, ``data_internode_encryption``): both ways between nodes;
  RS enforces clientAuth and RSA at upload from 7.22.2-79 / 8.0.10-64, and both EKUs are what works;
* **unknown**: a name this version does not know; the conservative rule (both EKUs).

The full documented profile (both EKUs, CN = FQDN, keyEncipherment for RSA keys, the four SANs) is
:func:`profile_gaps`: refused before push with ``strict_profile: true``, recorded as warnings otherwise.
"""

from __future__ import annotations

import enum

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from rotation.core import certs
from rotation.core.targets import DATABASE_PREFIX, LDAP_CLIENT, REST_CLIENT

INTERNODE_NAMES = ("ccs_internode_encryption", "data_internode_encryption")
SERVER_NAMES = frozenset({"cm", "api", "proxy", "metrics_exporter", "sso_service"})
CLIENT_NAMES = frozenset({"syncer", LDAP_CLIENT, REST_CLIENT})
# the CA bundles and signing certificates RS holds: no TLS role of their own
NON_TLS_NAMES = frozenset({"mtls_trusted_ca", "sso_issuer"})
# names the documented profile of CA-signed cluster certificates covers
PROFILE_NAMES = frozenset({"cm", "api", "proxy", "syncer", "metrics_exporter"})


class Role(enum.StrEnum):
    SERVER = "server"
    CLIENT = "client"
    INTERNODE = "internode"
    UNKNOWN = "unknown"

    @property
    def required_ekus(self) -> tuple[str, ...]:
        if self is Role.SERVER:
            return ("serverAuth",)
        if self is Role.CLIENT:
            return ("clientAuth",)
        return ("serverAuth", "clientAuth")

    @property
    def needs_rsa(self) -> bool:
        return self is Role.INTERNODE


def role_of(name: str) -> Role:
    """The role of a certificate by its RS name or rotation target name (``db:<key>`` serves TLS)."""
    text = str(name)
    if text in SERVER_NAMES or text.startswith(DATABASE_PREFIX):
        return Role.SERVER
    if text in CLIENT_NAMES:
        return Role.CLIENT
    if text in INTERNODE_NAMES:
        return Role.INTERNODE
    return Role.UNKNOWN


def role_problems(leaf: x509.Certificate, name: str) -> list[str]:
    """What ``leaf`` lacks for the role of slot ``name`` (empty when it can fill it)."""
    role = role_of(name)
    usages = certs.extended_key_usages(leaf)
    why = {Role.SERVER: f"{name} is presented by a listener",
           Role.CLIENT: f"RS presents {name} as a TLS client",
           Role.INTERNODE: f"{name} is used both ways between nodes",
           Role.UNKNOWN: f"{name} is not a name this version knows, so both are required"}[role]
    wanted = " and ".join(role.required_ekus)
    if not usages:
        problems = [f"leaf certificate has no extendedKeyUsage extension; {why}: it needs {wanted}"]
    else:
        problems = [f"leaf certificate extendedKeyUsage lacks {eku} ({', '.join(sorted(usages))}); "
                    f"{why}: it needs {wanted}" for eku in role.required_ekus if eku not in usages]
    if role.needs_rsa and not isinstance(leaf.public_key(), rsa.RSAPublicKey):
        key = certs.describe_key(leaf.public_key())
        problems.append(f"internode encryption certificates need an RSA key, not {key}")
    return problems


def documented_sans(fqdn: str) -> tuple[str, ...]:
    return (fqdn, f"*.{fqdn}", f"internal.{fqdn}", f"*.internal.{fqdn}")


def profile_gaps(leaf: x509.Certificate, name: str, fqdn: str, *, sans: bool = True) -> list[str]:
    """Where ``leaf`` misses RS's documented profile for CA-signed cluster certificates (empty for a name
    the profile does not cover). ``sans``: check the four documented SANs too."""
    if str(name) not in PROFILE_NAMES:
        return []
    gaps: list[str] = []
    usages = certs.extended_key_usages(leaf)
    gaps += [f"extendedKeyUsage lacks {eku} (the documented profile has serverAuth and clientAuth)"
             for eku in ("serverAuth", "clientAuth") if eku not in usages]
    cn = certs.common_name(leaf)
    if cn is None:
        gaps.append(f"the subject has no CN (the documented profile has CN = {fqdn})")
    elif cn.lower() != fqdn.lower():
        gaps.append(f"CN is {cn!r}, not the cluster FQDN {fqdn}")
    if isinstance(leaf.public_key(), rsa.RSAPublicKey):
        try:
            usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
            encipherment = usage.key_encipherment
        except x509.ExtensionNotFound:
            encipherment = False
        if not encipherment:
            gaps.append("keyUsage lacks keyEncipherment (the documented profile has it for RSA keys)")
    if sans:
        present = {n.lower() for n in certs.subject_alt_names(leaf)}
        missing = [n for n in documented_sans(fqdn) if n.lower() not in present]
        if missing:
            gaps.append("subjectAltName lacks " + ", ".join(missing) + " (the documented profile has all four)")
    return gaps


__all__ = ["INTERNODE_NAMES", "Role", "documented_sans", "profile_gaps", "role_of",
           "role_problems"]
