"""What a simulated cluster accepts at upload beyond a parsable, matching, unexpired pair.

Both ``PUT /v1/cluster/update_cert`` and ``PUT /v1/cluster/certificates`` run these, after the
checks of :func:`.tls.validate_uploads` (sources: ``shared/reference/rs-8x-and-public-cas-2026.md``
§1.1 and §1.5, ``redis-enterprise-api.md`` §1.1, §3.2 and §8):

* **names**: the five served certificates and the optional ones; the internode-encryption (INE)
  names only from 7.22.2-14 / 8.0.2-17 (customer INE certificates); ``ldap_client`` only through
  the bulk PUT where that exists (RS193156's workaround; ``update_cert`` answers 403
  ``unknown_certificate``), through ``update_cert`` before 7.22.2 (the only path there); names
  planted with ``POST /_sim/certificates`` or ``extra_certificates``.
* **INE** (``ccs_internode_encryption``, ``data_internode_encryption``): the clientAuth EKU and an
  RSA key, from 7.22.2-79 / 8.0.10-64 (RS176474), and in the ``as-documented`` mode on any version
  (D-INE) -> 400 ``invalid_internode_certificate``.
* **cert_profile** ``none`` (default, what the simulator always did) or ``as-documented``: the
  documented profile for CA-signed cluster certificates (``api``, ``cm``, ``proxy``, ``syncer``,
  ``metrics_exporter``): both EKUs, CN = cluster FQDN, digitalSignature (+ keyEncipherment for RSA),
  the SANs ``fqdn, *.fqdn, internal.fqdn, *.internal.fqdn``, RSA >= 2048 -> 400
  ``certificate_requirements_not_met`` listing every miss. Which of these a real RS enforces is
  unconfirmed (sheet §3): the mode is the strictest reading, for products that must cope with it.
* **8.2.0-25+**: key type against the TLS 1.2 suites of the certificate's path (``api``, ``cm``,
  ``metrics_exporter``: ``control_cipher_suites``; ``proxy``: ``data_cipher_list``); ignored when the
  path's minimum is TLS 1.3 -> 400 ``certificate_cipher_mismatch``.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .tls import KNOWN_NAMES, MAIN_NAMES, CertProblem, Material, UploadItem
from .versions import BULK_PUT_SINCE, version_tuple

PROFILE_MODES = ("none", "as-documented")
OCSP_WITHOUT_URL = ("fail", "accept")
INE_NAMES = ("ccs_internode_encryption", "data_internode_encryption")
CIPHER_PATHS = {"api": "control", "cm": "control", "metrics_exporter": "control", "proxy": "data"}
_PATH_FIELDS = {"control": ("min_control_TLS_version", "control_cipher_suites"),
                "data": ("min_data_TLS_version", "data_cipher_list")}
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


def _at_least(version: str, *floors: tuple[int, ...]) -> bool:
    """True when ``version`` reaches the floor of its own series (7.22.x, 8.0.x) or any later one."""
    v = version_tuple(version)
    series = [f for f in floors if v[:2] == f[:2]]
    if series:
        return v >= series[0]
    return v >= max(floors)


def customer_ine_supported(version: str) -> bool:
    return _at_least(version, (7, 22, 2, 14), (8, 0, 2, 17))


def ine_enforced(version: str) -> bool:
    return _at_least(version, (7, 22, 2, 79), (8, 0, 10, 64))


def cipher_check_enforced(version: str) -> bool:
    return version_tuple(version) >= (8, 2, 0, 25)


class Options(Protocol):
    """The issue-14 options of :class:`.cluster.SimulatorConfig`."""

    cert_profile: str
    ocsp_without_url: str
    extra_certificates: tuple[str, ...]
    proxy_ocsp_url: str | None


def check_options(config: Options) -> None:
    """Refuse a bad value among the issue-14 options of :class:`.cluster.SimulatorConfig` (ValueError)."""
    if config.cert_profile not in PROFILE_MODES:
        raise ValueError(f"cert_profile must be one of {PROFILE_MODES}, not {config.cert_profile!r}")
    if config.ocsp_without_url not in OCSP_WITHOUT_URL:
        raise ValueError(f"ocsp_without_url must be one of {OCSP_WITHOUT_URL}, not {config.ocsp_without_url!r}")
    for name in config.extra_certificates:
        if not re.match(NAME_PATTERN, name) or name in MAIN_NAMES:
            raise ValueError(f"extra certificate name {name!r}: lower-case letters, digits and _, "
                             "not one of the five served certificates")
    if config.proxy_ocsp_url is not None and not config.proxy_ocsp_url.startswith("http://"):
        raise ValueError(f"proxy_ocsp_url must be an http:// URL, not {config.proxy_ocsp_url!r}")


@dataclass(frozen=True)
class UploadRules:
    """The rules one upload request meets: the cluster's version, FQDN, settings and options."""

    version: str
    fqdn: str
    mode: str = "none"
    settings: Mapping[str, object] | None = None  # GET /v1/cluster fields (cipher lists, minimums)
    via: str = "bulk"  # "bulk" | "update_cert"
    extra_names: frozenset[str] = frozenset()

    def known_names(self) -> frozenset[str]:
        names = set(KNOWN_NAMES) | self.extra_names
        if not customer_ine_supported(self.version):
            names -= set(INE_NAMES)
        return frozenset(names)

    def check_names(self, items: list[UploadItem]) -> None:
        known = self.known_names()
        bulk_exists = version_tuple(self.version)[:3] >= BULK_PUT_SINCE
        for item in items:
            if item.name not in known:
                raise CertProblem(403, "unknown_certificate", f"Unknown certificate name {item.name!r}")
            if item.name == "ldap_client" and self.via == "update_cert" and bulk_exists:
                raise CertProblem(403, "unknown_certificate",
                                  "ldap_client cannot be updated with PUT /v1/cluster/update_cert; "
                                  "use PUT /v1/cluster/certificates")

    def check_profiles(self, materials: list[Material]) -> None:
        """Stage by stage over every item, like :func:`.tls.validate_uploads`: INE, profile, ciphers."""
        stages = (
            ("invalid_internode_certificate", self._internode_problems),
            ("certificate_requirements_not_met", self._documented_problems),
            ("certificate_cipher_mismatch", self._cipher_problems),
        )
        for code, problems_of in stages:
            for material in materials:
                problems = problems_of(material)
                if problems:
                    raise CertProblem(400, code, f"{material.name}: " + "; ".join(problems))

    def _internode_problems(self, material: Material) -> list[str]:
        if material.name not in INE_NAMES or not (self.mode == "as-documented" or ine_enforced(self.version)):
            return []
        return internode_problems(material.leaf)

    def _documented_problems(self, material: Material) -> list[str]:
        if self.mode != "as-documented" or material.name not in MAIN_NAMES:
            return []
        return documented_problems(material.leaf, self.fqdn)

    def _cipher_problems(self, material: Material) -> list[str]:
        if not cipher_check_enforced(self.version) or material.name not in CIPHER_PATHS:
            return []
        return cipher_problems(material.name, material.leaf, self.settings or {})


# -- the checks (pure) ---------------------------------------------------------------------------


def _ekus(leaf: x509.Certificate) -> set[x509.ObjectIdentifier]:
    try:
        return set(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return set()


def _describe_key(public_key: object) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA {public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"EC {public_key.curve.name}"
    return type(public_key).__name__.removeprefix("_")


def internode_problems(leaf: x509.Certificate) -> list[str]:
    problems = []
    if ExtendedKeyUsageOID.CLIENT_AUTH not in _ekus(leaf):
        problems.append("internode encryption certificates need the TLS Web Client Authentication "
                        "(clientAuth) extended key usage")
    if not isinstance(leaf.public_key(), rsa.RSAPublicKey):
        problems.append(f"internode encryption certificates need an RSA key, not {_describe_key(leaf.public_key())}")
    return problems


def documented_problems(leaf: x509.Certificate, fqdn: str) -> list[str]:
    """Every way ``leaf`` misses RS's documented profile for CA-signed cluster certificates."""
    problems = []
    ekus = _ekus(leaf)
    for oid, label in ((ExtendedKeyUsageOID.SERVER_AUTH, "TLS Web Server Authentication (serverAuth)"),
                       (ExtendedKeyUsageOID.CLIENT_AUTH, "TLS Web Client Authentication (clientAuth)")):
        if oid not in ekus:
            problems.append(f"extended key usage lacks {label}")
    names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        problems.append(f"the subject has no CN (must be {fqdn})")
    elif names[0].value != fqdn:
        problems.append(f"CN is {names[0].value!r}, must be the cluster FQDN {fqdn}")
    public = leaf.public_key()
    try:
        usage: x509.KeyUsage | None = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is None or not usage.digital_signature:
        problems.append("key usage lacks digitalSignature")
    if isinstance(public, rsa.RSAPublicKey) and (usage is None or not usage.key_encipherment):
        problems.append("key usage lacks keyEncipherment (required with an RSA key)")
    if isinstance(public, rsa.RSAPublicKey) and public.key_size < 2048:
        problems.append(f"RSA key of {public.key_size} bits; at least 2048 are required")
    try:
        sans = {n.lower() for n in leaf.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)}
    except x509.ExtensionNotFound:
        sans = set()
    missing = [n for n in (fqdn, f"*.{fqdn}", f"internal.{fqdn}", f"*.internal.{fqdn}") if n not in sans]
    if missing:
        problems.append("subjectAltName lacks " + ", ".join(missing))
    return problems


def cipher_problems(name: str, leaf: x509.Certificate, settings: Mapping[str, object]) -> list[str]:
    """RS 8.2.0-25: can TLS 1.2 clients of this certificate's path use its key type at all?"""
    minimum_field, cipher_field = _PATH_FIELDS[CIPHER_PATHS[name]]
    ciphers = settings.get(cipher_field)
    if str(settings.get(minimum_field)) == "1.3" or not isinstance(ciphers, str) or not ciphers:
        return []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.set_ciphers(f"{ciphers}:@SECLEVEL=0")
    except ssl.SSLError:
        return []  # the cluster settings were checked when written; nothing to judge here
    auths = {c["auth"] for c in context.get_ciphers() if c["protocol"] != "TLSv1.3"}
    public = leaf.public_key()
    needed = "auth-rsa" if isinstance(public, rsa.RSAPublicKey) else (
        "auth-ecdsa" if isinstance(public, ec.EllipticCurvePublicKey) else None)
    if needed is None or not auths or needed in auths:
        return []
    usable = " and ".join(sorted(a.removeprefix("auth-").upper() for a in auths))
    return [f"an {_describe_key(public)} key cannot be used with {cipher_field} {ciphers!r}, "
            f"whose TLS 1.2 suites authenticate {usable} keys only"]
