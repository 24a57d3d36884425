"""rotation.core.validate: every pre-push check, with real certificates and an injected clock."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rotation.core import certs
from rotation.core.errors import ValidationError
from rotation.core.model import CertName, CertRequest, IssuedCert, SecretPEM
from rotation.core.validate import ParsedBundle, validate_issued

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
FQDN = "cluster.example.com"
HOSTS = (FQDN, "node1." + FQDN)
REQUEST = CertRequest(cluster="prod", cert_name=CertName.PROXY, hosts=HOSTS)
BOTH = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def sign(cn, key, issuer=None, issuer_key=None, *, ca=False, sans=(FQDN, "*." + FQDN), ekus=BOTH,
         key_usage: dict | None = None, start=NOW - timedelta(days=1), end=NOW + timedelta(days=90)):
    builder = (
        x509.CertificateBuilder().subject_name(_name(cn))
        .issuer_name(issuer.subject if issuer else _name(cn)).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans and not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), False)
    if ekus and not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
    if key_usage is not None:
        flags = dict.fromkeys(
            ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"], False)
        builder = builder.add_extension(x509.KeyUsage(**{**flags, **key_usage}), critical=True)
    return builder.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki():
    """root -> intermediate, both P-256, plus a spare leaf key."""
    root_key, inter_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = sign("Test Root", root_key, ca=True)
    inter = sign("Test Intermediate", inter_key, root, root_key, ca=True)
    return {"root": root, "root_key": root_key, "inter": inter, "inter_key": inter_key}


def bundle(pki, *, key=None, leaf_key=None, chain=None, **leaf_options) -> IssuedCert:
    leaf_key = leaf_key or ec.generate_private_key(ec.SECP256R1())
    leaf = sign(FQDN, leaf_key, pki["inter"], pki["inter_key"], **leaf_options)
    return IssuedCert(
        key_pem=certs.private_key_to_pem(key or leaf_key),
        leaf_pem=certs.cert_to_pem(leaf),
        chain_pem=certs.certs_to_pem([pki["inter"]] if chain is None else chain),
    )


def problems_of(issued: IssuedCert, request: CertRequest = REQUEST, **kwargs) -> list[str]:
    with pytest.raises(ValidationError) as info:
        validate_issued(issued, request, now=kwargs.pop("now", NOW), **kwargs)
    assert "PRIVATE KEY" not in str(info.value) and "PRIVATE KEY" not in repr(info.value)
    assert str(info.value).startswith(f"{request.cluster}/{request.cert_name}: certificate failed validation")
    return info.value.problems


# --- the happy path ------------------------------------------------------------------------


def test_good_bundle_returns_parsed_bundle(pki):
    issued = bundle(pki)
    parsed = validate_issued(issued, REQUEST, now=NOW, trust_anchors=[pki["root"]])
    assert isinstance(parsed, ParsedBundle)
    assert parsed.chain == (pki["inter"],)
    assert parsed.fingerprint == certs.fingerprint(parsed.leaf)
    assert parsed.not_after == NOW + timedelta(days=90)
    assert parsed.sans == (FQDN, "*." + FQDN)
    assert parsed.certificates == (parsed.leaf, pki["inter"])
    assert "PRIVATE KEY" not in repr(parsed) and "key=" not in repr(parsed)


def test_root_at_the_end_is_accepted(pki):
    issued = bundle(pki, chain=[pki["inter"], pki["root"]])
    validate_issued(issued, REQUEST, now=NOW, trust_anchors=[pki["root"]])


def test_without_anchors_completeness_is_not_judged(pki):
    validate_issued(bundle(pki, chain=[]), REQUEST, now=NOW)


# --- each problem --------------------------------------------------------------------------


def test_key_mismatch(pki):
    other = ec.generate_private_key(ec.SECP384R1())
    assert problems_of(bundle(pki, key=other)) == [
        "private key (ECDSA P-384) does not match the leaf certificate (CN=cluster.example.com, ECDSA P-256)"
    ]


def test_chain_in_wrong_order(pki):
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = sign(FQDN, leaf_key, pki["inter"], pki["inter_key"])
    issued = IssuedCert(
        key_pem=certs.private_key_to_pem(leaf_key),
        leaf_pem=certs.cert_to_pem(leaf),
        chain_pem=certs.certs_to_pem([pki["root"], pki["inter"]]),
    )
    problems = problems_of(issued, trust_anchors=[pki["root"]])
    assert problems[0] == (
        "chain out of order: certificate #2 (CN=Test Root) did not issue certificate #1 "
        "(CN=cluster.example.com): issuer name does not match"
    )
    assert problems[1].startswith("chain out of order: certificate #3 (CN=Test Intermediate) did not issue")
    # The top is the intermediate, which the root did issue, so the chain counts as complete.
    assert len(problems) == 2


def test_chain_incomplete_names_the_top_certificate(pki):
    problems = problems_of(bundle(pki, chain=[]), trust_anchors=[pki["root"]])
    assert problems == [
        "chain incomplete: certificate #1 (CN=cluster.example.com) is not issued by a trusted CA "
        "(CN=Test Root)"
    ]


def test_chain_issued_by_an_untrusted_root(pki):
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    stranger = sign("Stranger Root", stranger_key, ca=True)
    problems = problems_of(bundle(pki), trust_anchors=[stranger])
    assert problems == [
        "chain incomplete: certificate #2 (CN=Test Intermediate) is not issued by a trusted CA "
        "(CN=Stranger Root)"
    ]


def test_host_not_covered(pki):
    request = CertRequest(cluster="prod", cert_name=CertName.API,
                          hosts=(FQDN, "a.b." + FQDN, "other.example.com"))
    assert problems_of(bundle(pki), request) == [
        f"host a.b.{FQDN} is not covered by the certificate's SANs ({FQDN}, *.{FQDN})",
        f"host other.example.com is not covered by the certificate's SANs ({FQDN}, *.{FQDN})",
    ]


def test_no_sans_at_all(pki):
    assert problems_of(bundle(pki, sans=()))[0] == (
        f"host {FQDN} is not covered by the certificate's SANs (no subjectAltName)"
    )


def test_expired(pki):
    issued = bundle(pki, start=NOW - timedelta(days=30), end=NOW - timedelta(seconds=1))
    assert problems_of(issued) == ["leaf certificate expired at 2030-06-01 11:59:59 UTC"]


def test_not_yet_valid(pki):
    issued = bundle(pki, start=NOW + timedelta(hours=1))
    assert problems_of(issued) == [
        "leaf certificate is not yet valid: notBefore 2030-06-01 13:00:00 UTC "
        "is after 2030-06-01 12:00:00 UTC"
    ]


def test_same_bundle_is_fine_later(pki):
    issued = bundle(pki, start=NOW + timedelta(hours=1))
    validate_issued(issued, REQUEST, now=NOW + timedelta(hours=2))


def test_expires_within_min_remaining(pki):
    issued = bundle(pki, end=NOW + timedelta(days=5))
    problems = problems_of(issued, min_remaining=timedelta(days=7))
    assert problems == [
        "leaf certificate expires at 2030-06-06 12:00:00 UTC, sooner than the required 7 days "
        "from 2030-06-01 12:00:00 UTC"
    ]
    validate_issued(issued, REQUEST, now=NOW, min_remaining=timedelta(days=4))


def test_expired_intermediate(pki):
    inter_key = ec.generate_private_key(ec.SECP256R1())
    old_inter = sign("Old Intermediate", inter_key, pki["root"], pki["root_key"], ca=True,
                     start=NOW - timedelta(days=400), end=NOW - timedelta(days=1))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = sign(FQDN, leaf_key, old_inter, inter_key)
    issued = IssuedCert(
        certs.private_key_to_pem(leaf_key), certs.cert_to_pem(leaf), certs.cert_to_pem(old_inter)
    )
    assert problems_of(issued) == ["certificate #2 (CN=Old Intermediate) expired at 2030-05-31 12:00:00 UTC"]


def test_server_auth_only_fills_a_server_slot_but_not_a_client_slot(pki):
    issued = bundle(pki, ekus=(ExtendedKeyUsageOID.SERVER_AUTH,))
    for server in (CertName.PROXY, CertName.CM, CertName.API, CertName.METRICS_EXPORTER):
        validate_issued(issued, CertRequest(cluster="prod", cert_name=server, hosts=HOSTS), now=NOW)
    syncer = CertRequest(cluster="prod", cert_name=CertName.SYNCER, hosts=HOSTS)
    assert problems_of(issued, syncer) == [
        "leaf certificate extendedKeyUsage lacks clientAuth (serverAuth); "
        "RS presents syncer as a TLS client: it needs clientAuth"
    ]


def test_client_auth_only_refused_for_a_server_slot(pki):
    issued = bundle(pki, ekus=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    validate_issued(issued, CertRequest(cluster="prod", cert_name=CertName.SYNCER, hosts=HOSTS), now=NOW)
    assert problems_of(issued) == [
        "leaf certificate extendedKeyUsage lacks serverAuth (clientAuth); "
        "proxy is presented by a listener: it needs serverAuth"
    ]


def test_missing_eku_extension(pki):
    assert problems_of(bundle(pki, ekus=())) == [
        "leaf certificate has no extendedKeyUsage extension; proxy is presented by a listener: it needs serverAuth"
    ]


def test_key_usage_without_digital_signature(pki):
    issued = bundle(pki, key_usage={"key_encipherment": True})
    assert problems_of(issued) == [
        "leaf certificate keyUsage lacks digitalSignature, which TLS handshakes need"
    ]
    validate_issued(bundle(pki, key_usage={"digital_signature": True}), REQUEST, now=NOW)


def test_leaf_that_is_a_ca(pki):
    issued = bundle(pki, ca=True, chain=[])
    assert "leaf certificate (CN=cluster.example.com) is a CA certificate (basicConstraints CA=true)" in (
        problems_of(issued)
    )


def test_rsa_1024_refused(pki):
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert problems_of(bundle(pki, leaf_key=weak)) == [
        "leaf key is RSA 1024; RS requires at least 2048 bits"
    ]


def test_ed25519_refused(pki):
    assert problems_of(bundle(pki, leaf_key=ed25519.Ed25519PrivateKey.generate())) == [
        "leaf key type Ed25519 is not supported: RS cipher suites need RSA or ECDSA P-256/P-384"
    ]


def unknown_key_type(cert: x509.Certificate) -> x509.Certificate:
    """``cert`` (an Ed25519 key) with its key algorithm renamed to an OID no library knows (1.3.101.114):
    a key type cryptography cannot read, as a PKI of the future (or a hostile file) may carry."""
    der = cert.public_bytes(serialization.Encoding.DER)
    assert der.count(b"\x06\x03\x2b\x65\x70") == 1
    return x509.load_der_x509_certificate(der.replace(b"\x06\x03\x2b\x65\x70", b"\x06\x03\x2b\x65\x72"))


def test_a_leaf_key_of_a_type_no_library_reads_is_refused(pki):
    key = ed25519.Ed25519PrivateKey.generate()
    leaf = unknown_key_type(sign(FQDN, key, pki["inter"], pki["inter_key"]))
    issued = IssuedCert(certs.private_key_to_pem(key), certs.cert_to_pem(leaf), certs.cert_to_pem(pki["inter"]))
    (problem,) = problems_of(issued)
    assert problem.startswith("certificate #1 in leaf certificate: its key") and "1.3.101.114" in problem


def test_a_chain_certificate_with_a_key_no_library_reads_is_refused(pki):
    odd = unknown_key_type(sign("Odd Intermediate", ed25519.Ed25519PrivateKey.generate(), pki["root"],
                                pki["root_key"], ca=True))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = sign(FQDN, leaf_key, odd, pki["inter_key"])
    issued = IssuedCert(certs.private_key_to_pem(leaf_key), certs.cert_to_pem(leaf), certs.cert_to_pem(odd))
    (problem,) = problems_of(issued)
    assert problem.startswith("certificate #1 in chain: its key") and "1.3.101.114" in problem
    # and where a chain is judged without being loaded from PEM (a handshake's chain): a reason, not a raise
    assert "signature cannot be verified" in certs.chain_problems([leaf, odd])[0]


def test_p521_refused(pki):
    assert "ECDSA P-521 is not supported" in problems_of(
        bundle(pki, leaf_key=ec.generate_private_key(ec.SECP521R1()))
    )[0]


def _sha1_signed(cert: x509.Certificate, issuer_key: rsa.RSAPrivateKey) -> x509.Certificate:
    """Re-sign an RSA/SHA-256 certificate with SHA-1.

    cryptography >= 42 refuses to build SHA-1 certificates, so swap the algorithm OID (same
    length, so no DER lengths move) in the TBS and outer algorithm, then sign the TBS again.
    """
    sha256_rsa = bytes.fromhex("06092a864886f70d01010b")
    sha1_rsa = bytes.fromhex("06092a864886f70d010105")
    tbs = cert.tbs_certificate_bytes.replace(sha256_rsa, sha1_rsa)
    signature = issuer_key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    der = cert.public_bytes(serialization.Encoding.DER).replace(sha256_rsa, sha1_rsa)
    assert der.endswith(cert.signature) and len(signature) == len(cert.signature)
    return x509.load_der_x509_certificate(der[: -len(signature)] + signature)


def test_sha1_signature_refused():
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = sign("RSA CA", ca_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _sha1_signed(sign(FQDN, leaf_key, ca, ca_key), ca_key)
    assert certs.signature_hash_name(leaf) == "sha1"
    issued = IssuedCert(certs.private_key_to_pem(leaf_key), certs.cert_to_pem(leaf), "")
    assert problems_of(issued) == ["leaf certificate is signed with SHA1; use SHA-256 or stronger"]
    chained = IssuedCert(issued.key_pem, issued.leaf_pem, certs.cert_to_pem(ca))
    assert problems_of(chained)[0].endswith("signature cannot be verified (sha1 signature, RSA 2048 key)")


# --- many problems, parse failures, extension points --------------------------------------


def test_every_problem_is_listed(pki):
    other = ec.generate_private_key(ec.SECP256R1())
    issued = bundle(pki, key=other, chain=[], ekus=(ExtendedKeyUsageOID.SERVER_AUTH,),
                    end=NOW - timedelta(days=1))
    request = CertRequest(cluster="prod", cert_name=CertName.SYNCER, hosts=("elsewhere.example.org",))
    problems = problems_of(issued, request, trust_anchors=[pki["root"]])
    assert [p.split(" ")[0] for p in problems] == ["private", "chain", "host", "leaf", "leaf"]
    assert "lacks clientAuth" in problems[-1]


@pytest.mark.parametrize(
    ("key_pem", "leaf_pem", "chain_pem", "expected"),
    [
        ("garbage", None, "", ["private key: not a PEM private key"]),
        (None, "garbage", "", ["leaf certificate: unexpected text outside PEM blocks at line 1 "
                               "(strip PKCS#12 'Bag Attributes' and other comments; RS refuses them)"]),
        (None, None, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
         ["certificate #1 in chain: not a valid X.509 certificate"]),
    ],
)
def test_parse_errors_become_problems(pki, key_pem, leaf_pem, chain_pem, expected):
    good = bundle(pki)
    issued = IssuedCert(
        key_pem=SecretPEM(key_pem) if key_pem is not None else good.key_pem,
        leaf_pem=leaf_pem if leaf_pem is not None else good.leaf_pem,
        chain_pem=chain_pem,
    )
    assert problems_of(issued) == expected


def test_two_certificates_in_leaf_pem(pki):
    good = bundle(pki)
    issued = IssuedCert(good.key_pem, good.leaf_pem + good.chain_pem, "")
    assert problems_of(issued) == ["leaf certificate: expected one certificate, found 2"]


def test_encrypted_key_is_a_problem_not_a_crash(pki):
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    encrypted = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"pw")).decode()
    good = bundle(pki, leaf_key=leaf_key)
    issued = IssuedCert(SecretPEM(encrypted), good.leaf_pem, good.chain_pem)
    assert problems_of(issued) == ["private key: key is encrypted and no password was given"]


def test_extra_checks_run_after_the_built_in_ones(pki):
    seen: list[ParsedBundle] = []

    def no_ecdsa(parsed: ParsedBundle, request: CertRequest) -> list[str]:
        seen.append(parsed)
        return [f"{request.cert_name}: ECDSA refused by the configured ciphers"]

    problems = problems_of(bundle(pki), extra_checks=[no_ecdsa, lambda b, r: []])
    assert problems == ["proxy: ECDSA refused by the configured ciphers"]
    assert seen[0].sans == (FQDN, "*." + FQDN)


def test_naive_now_is_refused(pki):
    with pytest.raises(ValueError, match="timezone-aware"):
        validate_issued(bundle(pki), REQUEST, now=NOW.replace(tzinfo=None))


# --- hostile inputs a client would refuse --------------------------------------------------


def test_an_ip_host_needs_an_ip_san_not_a_dns_name_spelling_it(pki):
    # TLS clients match an IP address only against iPAddress SANs: a dNSName "10.0.0.1" covers nothing
    request = CertRequest(cluster="prod", cert_name=CertName.PROXY, hosts=(FQDN, "10.0.0.1"))
    assert problems_of(bundle(pki, sans=(FQDN, "10.0.0.1")), request) == [
        "host 10.0.0.1 is not covered by the certificate's SANs (cluster.example.com, 10.0.0.1): "
        "an IP address needs an iPAddress SAN"
    ]
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(_name(FQDN)).issuer_name(pki["inter"].subject)
            .public_key(leaf_key.public_key()).serial_number(7)
            .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(FQDN), x509.IPAddress(
                ipaddress.ip_address("10.0.0.1"))]), False)
            .add_extension(x509.ExtendedKeyUsage(list(BOTH)), False).sign(pki["inter_key"], hashes.SHA256()))
    issued = IssuedCert(certs.private_key_to_pem(leaf_key), certs.cert_to_pem(leaf), certs.cert_to_pem(pki["inter"]))
    validate_issued(issued, request, now=NOW, trust_anchors=[pki["root"]])


def _intermediate(pki, cn, key, *, ca: bool | None, key_usage=None, constraints=None):
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(pki["root"].subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=365)))
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    if constraints is not None:
        builder = builder.add_extension(constraints, critical=True)
    return builder.sign(pki["root_key"], hashes.SHA256())


def _through(pki, inter, inter_key, **leaf_options) -> IssuedCert:
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = sign(FQDN, leaf_key, inter, inter_key, **leaf_options)
    return IssuedCert(certs.private_key_to_pem(leaf_key), certs.cert_to_pem(leaf), certs.cert_to_pem(inter))


@pytest.mark.parametrize("ca", [False, None], ids=["CA-false", "no-basicConstraints"])
def test_a_chain_certificate_that_is_no_ca_is_refused(pki, ca):
    # OpenSSL and every other client refuse a path through it ("invalid CA certificate")
    key = ec.generate_private_key(ec.SECP256R1())
    inter = _intermediate(pki, "Not A CA", key, ca=ca)
    assert problems_of(_through(pki, inter, key), trust_anchors=[pki["root"]]) == [
        "certificate #2 (CN=Not A CA) is not a CA certificate (no basicConstraints CA=true): "
        "clients refuse a chain through it"
    ]


def test_a_chain_certificate_whose_key_usage_lacks_key_cert_sign_is_refused(pki):
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=True,
                          encipher_only=False, decipher_only=False)
    inter = _intermediate(pki, "No Cert Sign", key, ca=True, key_usage=usage)
    assert problems_of(_through(pki, inter, key), trust_anchors=[pki["root"]]) == [
        "certificate #2 (CN=No Cert Sign) keyUsage lacks keyCertSign: clients refuse a chain through it"
    ]


def test_a_name_constrained_intermediate_that_excludes_the_leafs_names_is_refused(pki):
    key = ec.generate_private_key(ec.SECP256R1())
    permitted = x509.NameConstraints(permitted_subtrees=[x509.DNSName("other.org")], excluded_subtrees=None)
    inter = _intermediate(pki, "Other Only", key, ca=True, constraints=permitted)
    assert problems_of(_through(pki, inter, key), trust_anchors=[pki["root"]]) == [
        f"certificate #2 (CN=Other Only) has name constraints that do not permit SAN {name}: "
        "clients refuse the leaf" for name in (FQDN, "*." + FQDN)
    ]
    excluded = x509.NameConstraints(permitted_subtrees=None, excluded_subtrees=[x509.DNSName("." + FQDN)])
    inter = _intermediate(pki, "Not Subdomains", key, ca=True, constraints=excluded)
    assert problems_of(_through(pki, inter, key), trust_anchors=[pki["root"]]) == [
        f"certificate #2 (CN=Not Subdomains) has name constraints that do not permit SAN *.{FQDN}: "
        "clients refuse the leaf"
    ]
    # a constraint that permits the names changes nothing
    fits = x509.NameConstraints(permitted_subtrees=[x509.DNSName("EXAMPLE.com")], excluded_subtrees=None)
    inter = _intermediate(pki, "Example", key, ca=True, constraints=fits)
    validate_issued(_through(pki, inter, key), REQUEST, now=NOW, trust_anchors=[pki["root"]])


def _with_serial(cert: x509.Certificate, serial: bytes, issuer_key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    """``cert`` with a serial RFC 5280 forbids (cryptography refuses to build one): the one-byte serial
    INTEGER of the TBS swapped (same length, so no DER length moves), then the TBS signed again."""
    tbs = bytearray(cert.tbs_certificate_bytes)
    at = tbs.index(b"\x02\x01\x07")  # the serial 7 right after the version field
    tbs[at + 2:at + 3] = serial
    signature = issuer_key.sign(bytes(tbs), ec.ECDSA(hashes.SHA256()))
    algorithm = bytes.fromhex("300a06082a8648ce3d040302")  # ecdsa-with-SHA256
    bits = b"\x00" + signature
    body = bytes(tbs) + algorithm + b"\x03" + _der_len(len(bits)) + bits
    return x509.load_der_x509_certificate(b"\x30" + _der_len(len(body)) + body)


def _der_len(n: int) -> bytes:
    return bytes([n]) if n < 128 else bytes([0x81, n]) if n < 256 else bytes([0x82, n >> 8, n & 0xFF])


@pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")
@pytest.mark.parametrize("serial", [b"\x00", b"\xf9"], ids=["zero", "negative"])
def test_a_serial_that_is_not_positive_is_refused(pki, serial):
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    built = (x509.CertificateBuilder().subject_name(_name(FQDN)).issuer_name(pki["inter"].subject)
             .public_key(leaf_key.public_key()).serial_number(7)
             .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=30))
             .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in HOSTS]), False)
             .add_extension(x509.ExtendedKeyUsage(list(BOTH)), False).sign(pki["inter_key"], hashes.SHA256()))
    leaf = _with_serial(built, serial, pki["inter_key"])
    assert leaf.serial_number <= 0 and certs.issued_by(leaf, pki["inter"])
    issued = IssuedCert(certs.private_key_to_pem(leaf_key), certs.cert_to_pem(leaf), certs.cert_to_pem(pki["inter"]))
    assert problems_of(issued, trust_anchors=[pki["root"]]) == [
        f"leaf certificate has serial number {leaf.serial_number}; RFC 5280 requires a positive one "
        "(Go clients refuse the certificate)"
    ]


def test_an_intermediate_whose_eku_leaves_out_the_slots_usage_is_refused(pki):
    # OpenSSL and Go hold every CA of the path to the leaf's purpose ("unsuitable certificate purpose")
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder().subject_name(_name("Client CA")).issuer_name(pki["root"].subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    inter = builder.sign(pki["root_key"], hashes.SHA256())
    assert problems_of(_through(pki, inter, key), trust_anchors=[pki["root"]]) == [
        "certificate #2 (CN=Client CA) extendedKeyUsage lacks serverAuth (clientAuth): clients refuse a "
        "proxy certificate issued under it"
    ]
    syncer = CertRequest(cluster="prod", cert_name=CertName.SYNCER, hosts=HOSTS)
    validate_issued(_through(pki, inter, key), syncer, now=NOW, trust_anchors=[pki["root"]])


def _leaf_with_critical(pki, extension: x509.ExtensionType) -> IssuedCert:
    """A leaf for HOSTS under the intermediate, valid now, with ``extension`` marked critical."""
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(_name(FQDN)).issuer_name(pki["inter"].subject)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in HOSTS]), False)
            .add_extension(x509.ExtendedKeyUsage(list(BOTH)), False)
            .add_extension(extension, critical=True)
            .sign(pki["inter_key"], hashes.SHA256()))
    return IssuedCert(certs.private_key_to_pem(leaf_key), certs.cert_to_pem(leaf), certs.cert_to_pem(pki["inter"]))


def test_an_unknown_critical_extension_is_refused(pki):
    # a client must refuse a certificate with a critical extension it does not know (RFC 5280 4.2)
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    issued = _leaf_with_critical(pki, unknown)
    assert problems_of(issued, trust_anchors=[pki["root"]]) == [
        "leaf certificate has a critical extension clients do not know (1.3.6.1.4.1.99999.1): they refuse it"
    ]


def test_a_path_longer_than_a_cas_path_length_allows_is_refused(pki):
    # root -> inter (pathLen 0) -> sub -> leaf: "path length constraint exceeded" in every client
    key, sub_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    inter = (x509.CertificateBuilder().subject_name(_name("Inter 0")).issuer_name(pki["root"].subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=365))
             .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
             .sign(pki["root_key"], hashes.SHA256()))
    sub = sign("Sub CA", sub_key, inter, key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = sign(FQDN, leaf_key, sub, sub_key)
    issued = IssuedCert(certs.private_key_to_pem(leaf_key), certs.cert_to_pem(leaf), certs.certs_to_pem([sub, inter]))
    assert problems_of(issued, trust_anchors=[pki["root"]]) == [
        "certificate #3 (CN=Inter 0) allows 0 CA(s) below it (pathLenConstraint) but has 1: "
        "clients refuse a chain through it"
    ]


def test_an_intermediate_with_a_weak_rsa_key_is_refused(pki):
    # OpenSSL's default security level refuses the chain ("CA certificate key too weak")
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    inter = sign("Weak CA", weak, pki["root"], pki["root_key"], ca=True)
    assert problems_of(_through(pki, inter, weak), trust_anchors=[pki["root"]]) == [
        "certificate #2 (CN=Weak CA) key is RSA 1024; clients refuse a CA key under 2048 bits"
    ]


def test_a_ct_precertificate_is_refused(pki):
    # the poisoned copy a CA logs (crt.sh serves both): no client takes it, the issued certificate is another
    issued = _leaf_with_critical(pki, x509.PrecertPoison())
    assert problems_of(issued, trust_anchors=[pki["root"]]) == [
        "leaf certificate is a Certificate Transparency precertificate (poison extension), which clients refuse: "
        "use the certificate the CA issued"
    ]


@pytest.mark.parametrize(
    ("issued_on", "days", "limit"),
    [(datetime(2026, 3, 15, tzinfo=UTC), 201, 200), (datetime(2027, 3, 15, tzinfo=UTC), 101, 100),
     (datetime(2025, 6, 1, tzinfo=UTC), 399, 398)],
)
def test_a_public_leaf_longer_than_the_ca_b_maximum_is_refused(pki, issued_on, days, limit):
    # CA/B SC-081v3: a public CA that issued it must revoke it (Apple's clients refuse over 398 days)
    from rotation.core.validate import check_public_lifetime, parse_issued

    parsed, _ = parse_issued(bundle(pki, start=issued_on, end=issued_on + timedelta(days=days)))
    assert parsed is not None
    assert check_public_lifetime(parsed, REQUEST) == [
        f"leaf certificate is valid for {days} days from {issued_on:%Y-%m-%d}, over the {limit} days a public CA may "
        "issue then (CA/B Baseline Requirements): it is misissued and will be revoked"
    ]
    parsed, _ = parse_issued(bundle(pki, start=issued_on, end=issued_on + timedelta(days=limit, seconds=-1)))
    assert parsed is not None and check_public_lifetime(parsed, REQUEST) == []
