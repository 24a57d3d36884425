"""Pre-push checks: a chain of small named predicates over a parsed bundle.

The pipeline calls :func:`validate_issued` before anything reaches a cluster. Every check
returns a list of problem sentences (empty when fine); all of them run so the operator sees
every problem at once. More checks plug in through ``extra_checks`` (e.g. cipher-suite
compatibility), without touching this module.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from rotation.core import certs
from rotation.core.errors import CertificateError, ConfigError, ValidationError
from rotation.core.model import CertRequest, IssuedCert
from rotation.core.slot_rules import profile_gaps, role_of, role_problems
from rotation.core.text import when_text

MIN_RSA_BITS = 2048
WEAK_HASHES = frozenset({"sha1", "md5"})
ALLOWED_CURVES = frozenset({"secp256r1", "secp384r1"})


@dataclass(frozen=True)
class ParsedBundle:
    """An issued certificate after parsing: what checks look at and the pipeline records."""

    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key: certs.PrivateKey = field(repr=False)
    fingerprint: str
    not_after: datetime
    sans: tuple[str, ...]

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        """Leaf then chain, as RS receives them."""
        return (self.leaf, *self.chain)


@dataclass(frozen=True)
class CheckContext:
    """What the built-in checks need besides the bundle: the clock and the trust anchors."""

    now: datetime
    trust_anchors: tuple[x509.Certificate, ...] = ()
    min_remaining: timedelta = timedelta(0)
    require_anchor: bool = False  # the pipeline: a chain that leads to no configured anchor is refused


Check = Callable[[ParsedBundle, CertRequest, CheckContext], list[str]]
ExtraCheck = Callable[[ParsedBundle, CertRequest], list[str]]


def _label(cert: x509.Certificate) -> str:
    return certs.subject_text(cert) or "empty subject"


def _span(span: timedelta) -> str:
    if span % timedelta(days=1) == timedelta(0):
        return f"{span.days} day" + ("" if span.days == 1 else "s")
    return str(span)


# --- the checks ----------------------------------------------------------------------------


def check_key_matches_leaf(bundle: ParsedBundle, request: CertRequest, ctx: CheckContext) -> list[str]:
    if certs.key_matches(bundle.key, bundle.leaf):
        return []
    return [f"private key ({certs.describe_key(bundle.key)}) does not match the leaf certificate "
            f"({_label(bundle.leaf)}, {certs.describe_key(bundle.leaf.public_key())})"]


def check_chain_order(bundle: ParsedBundle, request: CertRequest, ctx: CheckContext) -> list[str]:
    return certs.chain_problems(bundle.certificates)


def check_chain_cas(bundle: ParsedBundle, request: CertRequest, ctx: CheckContext) -> list[str]:
    """Every certificate above the leaf must be a CA allowed to sign certificates: clients refuse a path
    through one that is not ("invalid CA certificate"), however well its signature verifies."""
    problems: list[str] = []
    for index, cert in enumerate(bundle.chain, start=2):
        try:
            constraints: x509.BasicConstraints | None = cert.extensions.get_extension_for_class(
                x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None and certs.is_self_signed(cert):
            continue  # a version 1 root: clients take it as a trust anchor
        if constraints is None or not constraints.ca:
            problems.append(f"certificate #{index} ({_label(cert)}) is not a CA certificate (no basicConstraints "
                            "CA=true): clients refuse a chain through it")
            continue
        if constraints.path_length is not None and index - 2 > constraints.path_length:
            problems.append(f"certificate #{index} ({_label(cert)}) allows {constraints.path_length} CA(s) below it "
                            f"(pathLenConstraint) but has {index - 2}: clients refuse a chain through it")
        try:
            usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            continue
        if not usage.key_cert_sign:
            problems.append(f"certificate #{index} ({_label(cert)}) keyUsage lacks keyCertSign: clients refuse a "
                            "chain through it")
    return problems


def _in_subtree(name: str | ipaddress.IPv4Address | ipaddress.IPv6Address, subtree: x509.GeneralName) -> bool:
    """RFC 5280 4.2.1.10: a dNSName constraint covers itself and its subdomains (with a leading dot,
    its subdomains only); an iPAddress constraint is a network."""
    if isinstance(name, str) and isinstance(subtree, x509.DNSName):
        host, base = name.lower().rstrip("."), subtree.value.lower().rstrip(".")
        return not base or (host.endswith(base) if base.startswith(".") else host == base or host.endswith("." + base))
    if not isinstance(name, str) and isinstance(subtree, x509.IPAddress):
        network = subtree.value
        return isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network) and name in network
    return False


def check_name_constraints(bundle: ParsedBundle, request: CertRequest, ctx: CheckContext) -> list[str]:
    """A CA above the leaf whose name constraints leave out one of its SANs: clients refuse the leaf."""
    try:
        san = bundle.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str | ipaddress.IPv4Address | ipaddress.IPv6Address] = [
        *san.get_values_for_type(x509.DNSName),
        *(ip for ip in san.get_values_for_type(x509.IPAddress)
          if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address))]
    problems: list[str] = []
    for index, cert in enumerate(bundle.chain, start=2):
        try:
            constraints = cert.extensions.get_extension_for_class(x509.NameConstraints).value
        except x509.ExtensionNotFound:
            continue
        permitted, excluded = constraints.permitted_subtrees or [], constraints.excluded_subtrees or []
        for name in names:
            kind = x509.DNSName if isinstance(name, str) else x509.IPAddress
            same_kind = [subtree for subtree in permitted if isinstance(subtree, kind)]
            refused = any(_in_subtree(name, subtree) for subtree in excluded) or (
                bool(same_kind) and not any(_in_subtree(name, subtree) for subtree in same_kind))
            if refused:
                problems.append(f"certificate #{index} ({_label(cert)}) has name constraints that do not permit "
                                f"SAN {name}: clients refuse the leaf")
    return problems


def check_chain_complete(bundle: ParsedBundle, request: CertRequest, ctx: CheckContext) -> list[str]:
    """The top of leaf+chain must be a trust anchor or be issued by one. Without anchors there is
    nothing to check against: refused when an anchor is required (trust is never skipped)."""
    if not ctx.trust_anchors:
        if ctx.require_anchor:
            return ["no trust anchor configured, so nothing proves the chain leads to a trusted CA: set the "
                    "issuer's ca_bundle, the cluster's verify bundle, or pass --trust FILE"]
        return []
    top = bundle.certificates[-1]
    top_fp = certs.fingerprint(top)
    for anchor in ctx.trust_anchors:
        if certs.fingerprint(anchor) == top_fp or certs.issued_by(top, anchor):
            return []
    anchors = ", ".join(_label(anchor) for anchor in ctx.trust_anchors)
    return [f"chain incomplete: certificate #{len(bundle.certificates)} ({_label(top)}) "
            f"is not issued by a trusted CA ({anchors})"]


def check_hosts_covered(bundle: ParsedBundle, request: CertRequest, ctx: CheckContext) -> list[str]:
    # Clients ignore the CN when SANs exist, so only SANs count; an IP address only matches an iPAddress SAN
    # (a dNSName spelling "10.0.0.1" covers nothing), and bundle.sans mixes both kinds as text.
    names = ", ".join(bundle.sans) if bundle.sans else "no subjectAltName"
    ips = certs.ip_sans(bundle.leaf)
    problems = []
    for host in request.hosts:
        is_ip = certs.is_ip(host)
        if not certs.host_covered(host, ips if is_ip else bundle.sans):
            hint = ": an IP address needs an iPAddress SAN" if is_ip and certs.host_covered(host, bundle.sans) else ""
            problems.append(f"host {host} is not covered by the certificate's SANs ({names}){hint}")
    return problems


def check_validity_window(bundle: ParsedBundle, request: CertRequest, ctx: CheckContext) -> list[str]:
    problems: list[str] = []
    for index, cert in enumerate(bundle.certificates, start=1):
        what = "leaf certificate" if index == 1 else f"certificate #{index} ({_label(cert)})"
        starts, ends = certs.not_before(cert), certs.not_after(cert)
        if starts > ctx.now:
            problems.append(f"{what} is not yet valid: notBefore {when_text(starts)} is after {when_text(ctx.now)}")
        if ends <= ctx.now:
            problems.append(f"{what} expired at {when_text(ends)}")
        elif index == 1 and ends - ctx.now < ctx.min_remaining:
            problems.append(f"{what} expires at {when_text(ends)}, sooner than the required "
                            f"{_span(ctx.min_remaining)} from {when_text(ctx.now)}")
    return problems


def check_extended_key_usage(bundle: ParsedBundle, request: CertRequest, ctx: CheckContext) -> list[str]:
    """Per slot (``slot_rules``): server slots need serverAuth, client slots clientAuth, internode both
    and RSA. One global rule would refuse every certificate Let's Encrypt issues today (no clientAuth).
    A CA above the leaf that restricts its EKU must allow the same: OpenSSL and Go check the whole path."""
    name = str(request.cert_name)
    problems = role_problems(bundle.leaf, name)
    for index, cert in enumerate(bundle.chain, start=2):
        usages = certs.extended_key_usages(cert)
        if usages and "anyExtendedKeyUsage" not in usages:
            problems += [f"certificate #{index} ({_label(cert)}) extendedKeyUsage lacks {eku} "
                         f"({', '.join(sorted(usages))}): clients refuse a {name} certificate issued under it"
                         for eku in role_of(name).required_ekus if eku not in usages]
    return problems


def check_key_usage(bundle: ParsedBundle, request: CertRequest, ctx: CheckContext) -> list[str]:
    try:
        usage = bundle.leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return []
    if usage.digital_signature:
        return []
    return ["leaf certificate keyUsage lacks digitalSignature, which TLS handshakes need"]


def check_not_a_ca(bundle: ParsedBundle, request: CertRequest, ctx: CheckContext) -> list[str]:
    if certs.is_ca(bundle.leaf):
        return [f"leaf certificate ({_label(bundle.leaf)}) is a CA certificate (basicConstraints CA=true)"]
    return []


def check_key_type(bundle: ParsedBundle, request: CertRequest, ctx: CheckContext) -> list[str]:
    # a CA's key counts too: OpenSSL's default security level refuses the chain ("CA certificate key too weak")
    weak_cas = [f"certificate #{index} ({_label(cert)}) key is RSA {key.key_size}; clients refuse a CA key under "
                f"{MIN_RSA_BITS} bits" for index, cert in enumerate(bundle.chain, start=2)
                if isinstance(key := cert.public_key(), rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS]
    public = bundle.leaf.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < MIN_RSA_BITS:
            return [f"leaf key is RSA {public.key_size}; RS requires at least {MIN_RSA_BITS} bits", *weak_cas]
        return weak_cas
    if isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name in ALLOWED_CURVES:
        return weak_cas
    return [f"leaf key type {certs.describe_key(public)} is not supported: "
            "RS cipher suites need RSA or ECDSA P-256/P-384", *weak_cas]


def check_signature_hashes(bundle: ParsedBundle, request: CertRequest, ctx: CheckContext) -> list[str]:
    problems: list[str] = []
    for index, cert in enumerate(bundle.certificates, start=1):
        if certs.is_self_signed(cert):
            continue  # a root's self-signature is never checked by TLS clients
        name = certs.signature_hash_name(cert)
        if name in WEAK_HASHES:
            what = "leaf certificate" if index == 1 else f"certificate #{index} ({_label(cert)})"
            problems.append(f"{what} is signed with {name.upper()}; use SHA-256 or stronger")
    return problems


def check_serial_numbers(bundle: ParsedBundle, request: CertRequest, ctx: CheckContext) -> list[str]:
    problems: list[str] = []
    for index, cert in enumerate(bundle.certificates, start=1):
        if cert.serial_number <= 0:  # cryptography only warns when it parses one
            what = "leaf certificate" if index == 1 else f"certificate #{index} ({_label(cert)})"
            problems.append(f"{what} has serial number {cert.serial_number}; RFC 5280 requires a positive one "
                            "(Go clients refuse the certificate)")
    return problems


def check_critical_extensions(bundle: ParsedBundle, request: CertRequest, ctx: CheckContext) -> list[str]:
    """RFC 5280 4.2: a certificate with a critical extension the client does not know is refused."""
    problems: list[str] = []
    for index, cert in enumerate(bundle.certificates, start=1):
        unknown = [ext.oid.dotted_string for ext in cert.extensions
                   if ext.critical and isinstance(ext.value, x509.UnrecognizedExtension)]
        what = "leaf certificate" if index == 1 else f"certificate #{index} ({_label(cert)})"
        if any(isinstance(ext.value, x509.PrecertPoison) for ext in cert.extensions):
            problems.append(f"{what} is a Certificate Transparency precertificate (poison extension), which clients "
                            "refuse: use the certificate the CA issued")
        if unknown:
            problems.append(f"{what} has a critical extension clients do not know ({', '.join(unknown)}): "
                            "they refuse it")
    return problems


# CA/B Baseline Requirements 6.3.2 (SC-081v3): the longest leaf a public CA may issue, by notBefore
PUBLIC_MAX_LIFETIMES = ((datetime(2029, 3, 15, tzinfo=UTC), 47), (datetime(2027, 3, 15, tzinfo=UTC), 100),
                        (datetime(2026, 3, 15, tzinfo=UTC), 200), (datetime(2020, 9, 1, tzinfo=UTC), 398))


def check_public_lifetime(bundle: ParsedBundle, request: CertRequest) -> list[str]:
    """An ``extra_checks`` entry for a chain anchored in the public roots: a longer leaf is misissued (its CA
    must revoke it) and Apple's clients refuse one over 398 days."""
    starts = certs.not_before(bundle.leaf)
    limit = next((days for since, days in PUBLIC_MAX_LIFETIMES if starts >= since), None)
    lifetime = bundle.not_after - starts + timedelta(seconds=1)  # the BRs count both ends
    if limit is None or lifetime <= timedelta(days=limit):
        return []
    return [f"leaf certificate is valid for {_span(lifetime - timedelta(seconds=1))} from {starts:%Y-%m-%d}, over "
            f"the {limit} days a public CA may issue then (CA/B Baseline Requirements): it is misissued and will be "
            "revoked"]


def strict_profile_check(fqdn: str) -> ExtraCheck:
    """``strict_profile: true``: the full documented RS profile, refused before push when missed."""

    def check(bundle: ParsedBundle, request: CertRequest) -> list[str]:
        return [f"strict_profile: {gap}" for gap in profile_gaps(bundle.leaf, str(request.cert_name), fqdn)]

    return check


def profile_warnings(bundle: ParsedBundle, request: CertRequest, fqdn: str) -> list[str]:
    """Without ``strict_profile``: what the certificate misses of the documented profile, for the record's
    warnings (the SANs are the plan's hosts, which ``check_hosts_covered`` already holds it to)."""
    return [f"{request.cert_name}: not the documented RS profile: {gap}"
            for gap in profile_gaps(bundle.leaf, str(request.cert_name), fqdn, sans=False)]


DEFAULT_CHECKS: tuple[Check, ...] = (
    check_key_matches_leaf,
    check_chain_order,
    check_chain_cas,
    check_chain_complete,
    check_hosts_covered,
    check_name_constraints,
    check_validity_window,
    check_extended_key_usage,
    check_key_usage,
    check_not_a_ca,
    check_key_type,
    check_signature_hashes,
    check_serial_numbers,
    check_critical_extensions,
)


# --- parsing and the entry point -----------------------------------------------------------


def parse_issued(issued: IssuedCert) -> tuple[ParsedBundle | None, list[str]]:
    """A bundle, or None and the parse problems (never raises for bad input)."""
    problems: list[str] = []
    key: certs.PrivateKey | None = None
    cert_list: list[x509.Certificate] = []
    try:
        key = certs.load_private_key(issued.key_pem, where="private key")
    except (CertificateError, ConfigError) as exc:
        problems.append(exc.message)
    try:
        cert_list = certs.load_certificates(issued.leaf_pem, where="leaf certificate")
        if len(cert_list) != 1:
            problems.append(f"leaf certificate: expected one certificate, found {len(cert_list)}")
        if issued.chain_pem.strip():
            cert_list += certs.load_certificates(issued.chain_pem, where="chain")
    except CertificateError as exc:
        problems.append(exc.message)
    if problems or key is None:
        return None, problems
    leaf = cert_list[0]
    return ParsedBundle(
        leaf=leaf,
        chain=tuple(cert_list[1:]),
        key=key,
        fingerprint=certs.fingerprint(leaf),
        not_after=certs.not_after(leaf),
        sans=certs.subject_alt_names(leaf),
    ), []


def validate_issued(
    issued: IssuedCert,
    request: CertRequest,
    *,
    now: datetime,
    trust_anchors: Sequence[x509.Certificate] = (),
    min_remaining: timedelta = timedelta(0),
    require_anchor: bool = False,
    extra_checks: Sequence[ExtraCheck] = (),
    checks: Sequence[Check] = DEFAULT_CHECKS,
) -> ParsedBundle:
    """The parsed bundle, or ValidationError listing every problem found."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    context = f"{request.cluster}/{request.cert_name}"
    bundle, problems = parse_issued(issued)
    if bundle is None:
        raise ValidationError(problems, context=context)
    ctx = CheckContext(now=now, trust_anchors=tuple(trust_anchors), min_remaining=min_remaining,
                       require_anchor=require_anchor)
    for check in checks:
        problems.extend(check(bundle, request, ctx))
    for extra in extra_checks:
        problems.extend(extra(bundle, request))
    if problems:
        raise ValidationError(problems, context=context)
    return bundle


__all__ = [
    "DEFAULT_CHECKS",
    "Check",
    "CheckContext",
    "ExtraCheck",
    "ParsedBundle",
    "check_public_lifetime",
    "parse_issued",
    "profile_warnings",
    "strict_profile_check",
    "validate_issued",
]
