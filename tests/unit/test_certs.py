"""rotation.core.certs with real crypto: parsing, fingerprints, keys, host coverage, chain order."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rotation.core import certs
from rotation.core.errors import CertificateError, ConfigError
from rotation.core.model import KeyType, SecretPEM

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def make_cert(
    cn: str,
    key,
    *,
    issuer: x509.Certificate | None = None,
    issuer_key=None,
    ca: bool = False,
    sans: tuple[str, ...] = (),
    ekus: tuple[x509.ObjectIdentifier, ...] = (),
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), False)
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture(scope="module")
def chain3():
    """root -> intermediate -> leaf, with their keys."""
    root_key, inter_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = make_cert("Root", root_key, ca=True)
    inter = make_cert("Inter", inter_key, issuer=root, issuer_key=root_key, ca=True)
    leaf = make_cert(
        "leaf.example.com", leaf_key, issuer=inter, issuer_key=inter_key,
        sans=("leaf.example.com", "*.leaf.example.com"),
        ekus=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
    )
    return root, inter, leaf, leaf_key


def pem(*cs: x509.Certificate) -> str:
    return certs.certs_to_pem(cs)


# --- parsing -------------------------------------------------------------------------------


def test_load_certificates_keeps_order(chain3):
    root, inter, leaf, _ = chain3
    loaded = certs.load_certificates(pem(leaf, inter, root), where="fullchain.pem")
    assert [certs.common_name(c) for c in loaded] == ["leaf.example.com", "Inter", "Root"]
    assert certs.load_certificates(pem(leaf).encode(), where="x") == [leaf]


def test_load_certificates_tolerates_crlf_and_blank_lines(chain3):
    _, inter, leaf, _ = chain3
    text = "\n\n" + pem(leaf).replace("\n", "\r\n") + "\n\n" + pem(inter)
    assert len(certs.load_certificates(text, where="x")) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "fullchain.pem: no PEM certificate found"),
        ("hello world\n", "fullchain.pem: unexpected text outside PEM blocks at line 1"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n", "fullchain.pem: unterminated or mismatched PEM block"),
        ("-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n", "is not base64"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
         "certificate #1 in fullchain.pem: not a valid X.509 certificate"),
        ("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n", "expected 'CERTIFICATE'"),
    ],
)
def test_load_certificates_rejects_garbage(text, message):
    with pytest.raises(CertificateError, match=re.escape(message)):
        certs.load_certificates(text, where="fullchain.pem")


def test_garbage_between_blocks_names_the_line(chain3):
    _, inter, leaf, _ = chain3
    text = pem(leaf) + "Bag Attributes\n    localKeyID: 01\n" + pem(inter)
    with pytest.raises(CertificateError, match=r"fullchain.pem: unexpected text outside PEM blocks at line"):
        certs.load_certificates(text, where="fullchain.pem")


def test_garbage_cert_in_second_position_is_numbered(chain3):
    _, _, leaf, _ = chain3
    bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    with pytest.raises(CertificateError, match=r"^certificate #2 in fullchain.pem: "):
        certs.load_certificates(pem(leaf) + bad, where="fullchain.pem")


def test_load_certificates_refuses_private_key_without_echoing_it(chain3):
    _, _, leaf, leaf_key = chain3
    text = pem(leaf) + certs.private_key_to_pem(leaf_key).reveal()
    with pytest.raises(CertificateError) as info:
        certs.load_certificates(text, where="bundle.pem")
    assert "private key block" in str(info.value)
    assert "PRIVATE KEY" not in str(info.value) and "PRIVATE KEY" not in repr(info.value)


def test_split_leaf_and_chain(chain3):
    root, inter, leaf, _ = chain3
    first, rest = certs.split_leaf_and_chain(pem(leaf, inter, root), where="x")
    assert first == certs.cert_to_pem(leaf)
    assert rest == pem(inter, root)
    assert certs.split_leaf_and_chain(pem(leaf), where="x") == (certs.cert_to_pem(leaf), "")


# --- private keys --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def test_private_key_round_trip_is_pkcs8_secret(ec_key):
    secret = certs.private_key_to_pem(ec_key)
    assert isinstance(secret, SecretPEM)
    assert secret.reveal().startswith("-----BEGIN PRIVATE KEY-----")
    assert "PRIVATE KEY" not in repr(secret) and "PRIVATE KEY" not in f"{secret}"
    loaded = certs.load_private_key(secret, where="key.pem")
    assert certs.describe_key(loaded) == "ECDSA P-256"


def test_load_private_key_accepts_pkcs1_rsa():
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # size irrelevant here
    pkcs1 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert b"BEGIN RSA PRIVATE KEY" in pkcs1
    assert certs.describe_key(certs.load_private_key(pkcs1, where="k")) == "RSA 1024"


def test_encrypted_key_errors_are_clear_and_secret_free(ec_key):
    encrypted = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    assert certs.key_is_encrypted(encrypted)
    loaded = certs.load_private_key(encrypted, where="ca-key.pem", password=b"s3cret")
    assert certs.key_matches(loaded, make_cert("x", ec_key))
    cases = [
        (None, "ca-key.pem: key is encrypted and no password was given"),
        (b"wrong", "ca-key.pem: wrong password or key is encrypted"),
    ]
    for password, message in cases:
        with pytest.raises(ConfigError) as info:
            certs.load_private_key(encrypted, where="ca-key.pem", password=password)
        assert str(info.value) == message
        assert "PRIVATE KEY" not in repr(info.value) and "s3cret" not in str(info.value)


def test_password_for_plain_key_is_config_error(ec_key):
    with pytest.raises(ConfigError, match="a password was given but the key is not encrypted"):
        certs.load_private_key(certs.private_key_to_pem(ec_key), where="k.pem", password=b"x")


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "Bag Attributes\n", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"],
)
def test_not_a_key(text):
    with pytest.raises(CertificateError, match="^ca-key.pem: not a PEM private key$"):
        certs.load_private_key(text, where="ca-key.pem")


def test_corrupt_key_body():
    text = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    with pytest.raises(CertificateError) as info:
        certs.load_private_key(text, where="k.pem")
    assert str(info.value) == "k.pem: not a valid private key (unsupported or corrupt)"


def test_key_beside_certificate_is_found(chain3):
    _, _, leaf, leaf_key = chain3
    combined = pem(leaf) + certs.private_key_to_pem(leaf_key).reveal()
    assert certs.key_matches(certs.load_private_key(combined, where="combined.pem"), leaf)


# --- keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", [KeyType.ECDSA_P256, KeyType.ECDSA_P384, KeyType.RSA_2048])
def test_generate_and_classify(key_type):
    key = certs.generate_private_key(key_type)
    assert certs.key_type_of(key) is key_type
    assert certs.key_type_of(key.public_key()) is key_type


def test_describe_and_classify_other_keys():
    assert certs.describe_key(ec.generate_private_key(ec.SECP384R1())) == "ECDSA P-384"
    ed = ed25519.Ed25519PrivateKey.generate()
    assert certs.describe_key(ed) == "Ed25519"
    assert certs.key_type_of(ed) is None
    assert certs.key_type_of(ec.generate_private_key(ec.SECP521R1())) is None


def test_key_matches(chain3, ec_key):
    _, _, leaf, leaf_key = chain3
    assert certs.key_matches(leaf_key, leaf)
    assert not certs.key_matches(ec_key, leaf)


# --- fingerprints and fields ---------------------------------------------------------------


def test_fingerprints(chain3):
    _, _, leaf, _ = chain3
    der = leaf.public_bytes(serialization.Encoding.DER)
    fp = certs.fingerprint(leaf)
    assert fp == hashlib.sha256(der).hexdigest() == certs.der_fingerprint(der)
    assert fp == leaf.fingerprint(hashes.SHA256()).hex()
    assert len(fp) == 64 and fp == fp.lower() and ":" not in fp
    assert certs.short_fingerprint(fp) == fp[:16]
    assert certs.short_fingerprint("AB:CD:" + fp[4:]) == ("abcd" + fp[4:])[:16]


def test_fields(chain3):
    _, inter, leaf, _ = chain3
    assert certs.subject_alt_names(leaf) == ("leaf.example.com", "*.leaf.example.com")
    assert certs.subject_alt_names(inter) == ()
    assert certs.common_name(leaf) == "leaf.example.com"
    assert certs.subject_text(leaf) == "CN=leaf.example.com"
    assert certs.not_after(leaf) == NOW + timedelta(days=30)
    assert certs.not_before(leaf).tzinfo is not None
    assert certs.extended_key_usages(leaf) == {"serverAuth", "clientAuth"}
    assert certs.extended_key_usages(inter) == set()
    assert certs.signature_hash_name(leaf) == "sha256"
    assert certs.is_ca(inter) and not certs.is_ca(leaf)


def test_ip_sans_are_strings():
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(NOW).not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("a.example"), x509.IPAddress(ipaddress.ip_address("10.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    assert certs.subject_alt_names(cert) == ("a.example", "10.0.0.1")
    assert certs.common_name(make_cert("only-cn", key)) == "only-cn"


# --- host coverage -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "names", "covered"),
    [
        ("cluster.example.com", ["cluster.example.com"], True),
        ("Cluster.Example.COM", ["cluster.example.com"], True),
        ("cluster.example.com.", ["cluster.example.com"], True),
        ("node1.cluster.example.com", ["*.cluster.example.com"], True),
        ("NODE1.cluster.example.com", ["*.Cluster.example.com"], True),
        ("cluster.example.com", ["*.cluster.example.com"], False),
        ("a.b.cluster.example.com", ["*.cluster.example.com"], False),
        ("redis-12000.cluster.example.com", ["cluster.example.com", "*.cluster.example.com"], True),
        ("other.example.com", ["cluster.example.com"], False),
        ("xcluster.example.com", ["*cluster.example.com"], False),
        ("10.0.0.1", ["10.0.0.1"], True),
        ("::1", ["0:0::1"], True),
        ("10.0.0.1", ["*.0.0.1"], False),
        ("cluster.example.com", [], False),
        # clients take no wildcard with fewer than two labels after it (OpenSSL, RFC 6125 6.4.3)
        ("rs.lab", ["*.lab"], False),
        ("rs.lab.", ["*.lab."], False),
        ("node1.rs.lab", ["*.rs.lab"], True),
    ],
)
def test_host_covered(host, names, covered):
    assert certs.host_covered(host, names) is covered


# --- chains --------------------------------------------------------------------------------


def test_chain_in_order_has_no_problems(chain3):
    root, inter, leaf, _ = chain3
    assert certs.chain_problems([leaf, inter, root]) == []
    assert certs.chain_problems([leaf, inter]) == []
    assert certs.chain_problems([leaf]) == []
    assert certs.issued_by(leaf, inter) and certs.issued_by(inter, root)
    assert not certs.issued_by(leaf, root)
    assert certs.is_self_signed(root) and not certs.is_self_signed(inter)


def test_chain_out_of_order_is_named(chain3):
    root, inter, leaf, _ = chain3
    problems = certs.chain_problems([leaf, root, inter])
    assert problems[0] == (
        "chain out of order: certificate #2 (CN=Root) did not issue certificate #1 "
        "(CN=leaf.example.com): issuer name does not match"
    )
    assert problems[1].startswith(
        "chain out of order: certificate #3 (CN=Inter) did not issue certificate #2"
    )
    assert len(problems) == 2


def test_chain_with_right_name_but_wrong_key(chain3):
    root, inter, leaf, _ = chain3
    impostor_key = ec.generate_private_key(ec.SECP256R1())
    impostor = make_cert("Inter", impostor_key, issuer=root, issuer_key=impostor_key, ca=True)
    assert certs.chain_problems([leaf, impostor]) == [
        "chain out of order: certificate #2 (CN=Inter) did not issue certificate #1 "
        "(CN=leaf.example.com): signature does not verify with its key"
    ]


def test_legacy_encrypted_pkcs1_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    legacy = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(b"pw"),
    )
    assert b"Proc-Type: 4,ENCRYPTED" in legacy and certs.key_is_encrypted(legacy)
    assert certs.describe_key(certs.load_private_key(legacy, where="k", password=b"pw")) == "RSA 1024"
    with pytest.raises(ConfigError, match="^k: wrong password or key is encrypted$"):
        certs.load_private_key(legacy, where="k", password=b"nope")


@pytest.mark.parametrize("kind", ["DER", "PKCS#12"])
def test_a_binary_file_is_named_as_such(chain3, kind):
    from cryptography.hazmat.primitives.serialization import pkcs12

    _, _, leaf, leaf_key = chain3
    data = (leaf.public_bytes(serialization.Encoding.DER) if kind == "DER" else
            pkcs12.serialize_key_and_certificates(b"x", leaf_key, leaf, None, serialization.NoEncryption()))
    message = "cert.p12: binary data, not PEM text (a DER or PKCS#12 file?); convert it to PEM first"
    with pytest.raises(CertificateError) as info:
        certs.load_certificates(data, where="cert.p12")
    assert info.value.message == message
    with pytest.raises(CertificateError) as info:
        certs.load_private_key(data, where="cert.p12")
    assert info.value.message == message


@pytest.mark.parametrize(
    ("encode", "message"),
    [
        (lambda text: b"\xef\xbb\xbf" + text.encode(), "fullchain.pem: starts with a UTF-8 byte-order mark; "
                                                       "save it without one (plain ASCII PEM)"),
        (lambda text: text.encode("utf-16"), "fullchain.pem: UTF-16 text; save it as plain ASCII PEM"),
    ],
    ids=["utf8-bom", "utf16"],
)
def test_a_byte_order_mark_is_named(chain3, encode, message):
    # what Windows editors and PowerShell redirection write: refused for what it is, not as stray text
    _, inter, leaf, _ = chain3
    with pytest.raises(CertificateError) as info:
        certs.load_certificates(encode(pem(leaf, inter)), where="fullchain.pem")
    assert info.value.message == message
