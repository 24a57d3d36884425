"""Issuers with real crypto: the internal CA, bring-your-own files, the registry, the contract."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_args

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from rotation.adapters.clock import SYSTEM_CLOCK
from rotation.adapters.issuers.base import Issuer
from rotation.adapters.issuers.factory import IssuerFactory, build_issuer
from rotation.adapters.issuers.files import FileIssuer
from rotation.adapters.issuers.internal_ca import InternalCA, init_ca
from rotation.adapters.issuers.registry import BUILDERS, builder
from rotation.config import load_inventory
from rotation.config.issuers import IssuerSettings
from rotation.core import certs
from rotation.core.errors import CertificateError, ConfigError, OverwriteRefused, RotationError
from rotation.core.model import CertName, CertRequest, KeyType
from rotation.core.ocsp import responder_urls
from rotation.core.validate import validate_issued

NOW = datetime.now(UTC).replace(microsecond=0)
FQDN = "cluster.example.com"
REQUEST = CertRequest(cluster="prod", cert_name=CertName.PROXY, hosts=(FQDN, "*." + FQDN))
PASSWORD = b"correct horse"


def clock() -> datetime:
    return NOW


def anchors_of(issuer: Issuer) -> list[x509.Certificate]:
    return [c for pem in issuer.trust_anchors() for c in certs.load_certificates(pem, where="anchor")]


def write_key(path: Path, key, password: bytes | None = None) -> Path:
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       encryption))
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> tuple[Path, Path]:
    return init_ca(tmp_path_factory.mktemp("root"), now=NOW)


@pytest.fixture(scope="module")
def intermediate(root, tmp_path_factory) -> tuple[Path, Path]:
    """An intermediate CA signed by the root, as files: (inter.pem, inter-key.pem)."""
    root_cert = certs.load_certificates(root[0].read_text(), where="ca.pem")[0]
    root_key = certs.load_private_key(root[1].read_bytes(), where="ca-key.pem")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Issuing CA 1")]))
        .issuer_name(root_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(root_key, certs.signing_hash_for(root_key))
    )
    directory = tmp_path_factory.mktemp("inter")
    (directory / "inter.pem").write_text(certs.cert_to_pem(cert))
    return directory / "inter.pem", write_key(directory / "inter-key.pem", key, PASSWORD)


@pytest.fixture(scope="module")
def byo_files(intermediate, tmp_path_factory) -> tuple[Path, Path, Path]:
    """Bring-your-own files from a 'corporate PKI': fullchain, encrypted key, CA bundle."""
    pki = InternalCA("corp", intermediate[0], intermediate[1], PASSWORD, clock=clock)
    issued = pki.issue(REQUEST)
    directory = tmp_path_factory.mktemp("byo")
    (directory / "fullchain.pem").write_text(issued.fullchain_pem)
    key = certs.load_private_key(issued.key_pem, where="issued")
    write_key(directory / "key.pem", key, PASSWORD)
    (directory / "ca-bundle.pem").write_text("".join(pki.trust_anchors()))
    return directory / "fullchain.pem", directory / "key.pem", directory / "ca-bundle.pem"


# --- init_ca -------------------------------------------------------------------------------


def test_init_ca_writes_a_root_with_a_private_key_file(root):
    cert_path, key_path = root
    assert (cert_path.name, key_path.name) == ("ca.pem", "ca-key.pem")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = certs.load_certificates(cert_path.read_text(), where="ca.pem")[0]
    key = certs.load_private_key(key_path.read_bytes(), where="ca-key.pem")
    assert certs.key_matches(key, cert) and certs.is_self_signed(cert) and certs.is_ca(cert)
    assert certs.describe_key(key) == "ECDSA P-384"
    assert certs.common_name(cert) == "rotation internal CA"
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert certs.not_after(cert) == NOW + timedelta(days=3650)


def test_init_ca_refuses_to_overwrite(tmp_path):
    cert_path, key_path = init_ca(tmp_path, key_type=KeyType.ECDSA_P256, now=NOW)
    before = cert_path.read_bytes(), key_path.read_bytes()
    with pytest.raises(OverwriteRefused, match="already exist.*refusing to overwrite a CA") as info:
        init_ca(tmp_path, now=NOW)
    assert str(cert_path) in str(info.value)
    assert (cert_path.read_bytes(), key_path.read_bytes()) == before


def test_init_ca_refuses_when_only_the_key_exists(tmp_path):
    (tmp_path / "ca-key.pem").write_text("precious")
    with pytest.raises(OverwriteRefused, match="ca-key.pem already exist"):
        init_ca(tmp_path, now=NOW)
    assert (tmp_path / "ca-key.pem").read_text() == "precious"
    assert not (tmp_path / "ca.pem").exists()


def test_init_ca_overwrite_replaces_and_keeps_the_key_private(tmp_path):
    cert_path, key_path = init_ca(tmp_path, key_type=KeyType.ECDSA_P256, now=NOW)
    old = cert_path.read_bytes()
    key_path.chmod(0o644)
    init_ca(tmp_path, key_type=KeyType.ECDSA_P256, overwrite=True, now=NOW, common_name="New CA")
    assert cert_path.read_bytes() != old
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert "CN=New CA" in certs.subject_text(certs.load_certificates(cert_path.read_text(), where="x")[0])


# --- InternalCA ----------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", list(KeyType))
def test_internal_ca_issues_each_key_type(root, key_type):
    ca = InternalCA("lab", *root, clock=clock)
    request = CertRequest(cluster="prod", cert_name=CertName.API, hosts=REQUEST.hosts, key_type=key_type)
    issued = ca.issue(request)
    parsed = validate_issued(issued, request, now=NOW, trust_anchors=anchors_of(ca))
    leaf = parsed.leaf
    assert certs.key_type_of(parsed.key) is key_type
    assert issued.chain_pem == ""
    assert issued.key_pem.reveal().startswith("-----BEGIN PRIVATE KEY-----")
    assert certs.signature_hash_name(leaf) == "sha384"  # the root from init_ca is P-384
    assert certs.common_name(leaf) == FQDN
    assert parsed.sans == (FQDN, "*." + FQDN)
    assert certs.extended_key_usages(leaf) == {"serverAuth", "clientAuth"}
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment is key_type.is_rsa
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert certs.not_before(leaf) == NOW - timedelta(minutes=5)
    assert certs.not_after(leaf) == NOW + timedelta(days=90)


def test_every_issue_gets_a_fresh_key(root):
    ca = InternalCA("lab", *root, clock=clock)
    first, second = ca.issue(REQUEST), ca.issue(REQUEST)
    assert first.key_pem.reveal() != second.key_pem.reveal()
    leaves = [certs.load_certificates(i.leaf_pem, where="x")[0] for i in (first, second)]
    assert leaves[0].serial_number != leaves[1].serial_number
    assert certs.fingerprint(leaves[0]) != certs.fingerprint(leaves[1])


def test_validity_from_request_capped_by_the_ca(tmp_path):
    cert_path, key_path = init_ca(tmp_path, key_type=KeyType.ECDSA_P256, validity=timedelta(days=30), now=NOW)
    ca = InternalCA("lab", str(cert_path), str(key_path), validity=timedelta(days=7), clock=clock)
    short = ca.issue(REQUEST)
    assert certs.not_after(certs.load_certificates(short.leaf_pem, where="x")[0]) == NOW + timedelta(days=7)
    long_request = CertRequest("prod", CertName.CM, REQUEST.hosts, validity=timedelta(days=365))
    capped = certs.load_certificates(ca.issue(long_request).leaf_pem, where="x")[0]
    assert certs.not_after(capped) == NOW + timedelta(days=30)


def test_intermediate_ca_sends_its_certificate_as_chain(root, intermediate):
    ca = InternalCA("issuing", *intermediate, ca_key_password=PASSWORD, clock=clock)
    issued = ca.issue(REQUEST)
    assert issued.chain_pem == intermediate[0].read_text()
    root_cert = certs.load_certificates(root[0].read_text(), where="ca.pem")
    parsed = validate_issued(issued, REQUEST, now=NOW, trust_anchors=root_cert)
    assert certs.common_name(parsed.chain[0]) == "Issuing CA 1"
    assert certs.signature_hash_name(parsed.leaf) == "sha256"  # the intermediate is P-256
    assert ca.trust_anchors() == [intermediate[0].read_text()]


def test_intermediate_with_root_in_the_file_anchors_at_the_root(root, intermediate, tmp_path):
    both = tmp_path / "inter-and-root.pem"
    both.write_text(intermediate[0].read_text() + root[0].read_text())
    ca = InternalCA("issuing", both, intermediate[1], ca_key_password=PASSWORD.decode(), clock=clock)
    issued = ca.issue(REQUEST)
    assert issued.chain_pem == intermediate[0].read_text()  # the root stays out of the chain
    assert ca.trust_anchors() == [root[0].read_text()]
    validate_issued(issued, REQUEST, now=NOW, trust_anchors=anchors_of(ca))


def test_internal_ca_puts_its_ocsp_url_in_the_aia(root):
    url = "http://ocsp.example.com/ca1"
    leaf = certs.load_certificates(InternalCA("lab", *root, clock=clock, ocsp_url=url).issue(REQUEST).leaf_pem,
                                   where="x")[0]
    assert responder_urls(leaf) == (url,)
    plain = certs.load_certificates(InternalCA("lab", *root, clock=clock).issue(REQUEST).leaf_pem, where="x")[0]
    assert responder_urls(plain) == ()  # no AIA at all without ocsp_url


def test_files_are_loaded_lazily(tmp_path):
    ca = InternalCA("lab", tmp_path / "nope.pem", tmp_path / "nope-key.pem")
    with pytest.raises(ConfigError, match=r"nope.pem: CA certificate file not found"):
        ca.check()


def _config_error(ca: InternalCA) -> str:
    with pytest.raises(ConfigError) as info:
        ca.issue(REQUEST)
    text = str(info.value) + repr(info.value)
    assert "PRIVATE KEY" not in text and PASSWORD.decode() not in text
    return str(info.value)


def test_internal_ca_config_errors(root, intermediate, tmp_path):
    inter_cert, inter_key = intermediate
    assert _config_error(InternalCA("x", root[0], tmp_path / "missing.pem")) == (
        f"{tmp_path / 'missing.pem'}: CA key file not found"
    )
    assert _config_error(InternalCA("x", inter_cert, inter_key, b"wrong", clock=clock)) == (
        f"{inter_key}: wrong password or key is encrypted"
    )
    assert _config_error(InternalCA("x", inter_cert, inter_key, clock=clock)) == (
        f"{inter_key}: key is encrypted and no password was given"
    )
    assert _config_error(InternalCA("x", inter_cert, root[1], clock=clock)) == (
        f"{root[1]}: CA key does not match the CA certificate in {inter_cert}"
    )
    later = InternalCA("x", *root, clock=lambda: NOW + timedelta(days=3651))
    assert "CA certificate expired at" in _config_error(later)
    (tmp_path / "garbage.pem").write_text("not a certificate")
    assert "garbage.pem: unexpected text outside PEM blocks" in _config_error(
        InternalCA("x", tmp_path / "garbage.pem", root[1], clock=clock)
    )


def test_a_leaf_is_not_a_ca(root, tmp_path):
    issued = InternalCA("lab", *root, clock=clock).issue(REQUEST)
    (tmp_path / "leaf.pem").write_text(issued.leaf_pem)
    (tmp_path / "leaf-key.pem").write_text(issued.key_pem.reveal())
    ca = InternalCA("x", tmp_path / "leaf.pem", tmp_path / "leaf-key.pem", clock=clock)
    with pytest.raises(ConfigError, match="not a CA certificate"):
        ca.check()


def test_internal_ca_repr_hides_the_password(intermediate):
    ca = InternalCA("issuing", *intermediate, ca_key_password=PASSWORD, clock=clock)
    ca.check()
    assert PASSWORD.decode() not in repr(ca) and "PRIVATE KEY" not in repr(ca)


# --- FileIssuer ----------------------------------------------------------------------------


def test_file_issuer_returns_the_files(byo_files, intermediate):
    fullchain, key_file, bundle = byo_files
    issuer = FileIssuer("corp", fullchain, key_file, key_password=PASSWORD)
    issuer.check()
    issued = issuer.issue(REQUEST)
    assert issued.fullchain_pem == fullchain.read_text()
    assert issued.chain_pem == intermediate[0].read_text()
    assert issued.key_pem.reveal().startswith("-----BEGIN PRIVATE KEY-----")  # decrypted, PKCS#8
    assert issuer.trust_anchors() == []
    assert FileIssuer("corp", fullchain, key_file, PASSWORD, ca_bundle=bundle).trust_anchors() == [
        intermediate[0].read_text()
    ]


def test_file_issuer_picks_up_renewed_files(byo_files, root, tmp_path):
    fullchain, key_file, _ = byo_files
    target_cert, target_key = tmp_path / "cert.pem", tmp_path / "key.pem"
    target_cert.write_text(fullchain.read_text())
    target_key.write_bytes(key_file.read_bytes())
    issuer = FileIssuer("corp", target_cert, target_key, PASSWORD.decode())
    first = issuer.issue(REQUEST)
    renewed = InternalCA("lab", *root, clock=clock).issue(REQUEST)
    target_cert.write_text(renewed.fullchain_pem)
    target_key.write_text(renewed.key_pem.reveal())
    issuer = FileIssuer("corp", target_cert, target_key)
    assert issuer.issue(REQUEST).leaf_pem == renewed.leaf_pem != first.leaf_pem


def test_file_issuer_accepts_a_pkcs1_key(root, tmp_path):
    issued = InternalCA("lab", *root, clock=clock).issue(
        CertRequest("prod", CertName.API, REQUEST.hosts, key_type=KeyType.RSA_2048)
    )
    key = certs.load_private_key(issued.key_pem, where="k")
    pkcs1 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption())
    (tmp_path / "cert.pem").write_text(issued.fullchain_pem)
    (tmp_path / "key.pem").write_bytes(pkcs1)
    again = FileIssuer("corp", tmp_path / "cert.pem", tmp_path / "key.pem").issue(REQUEST)
    assert again.key_pem.reveal() == issued.key_pem.reveal()


@pytest.mark.parametrize(
    ("cert_text", "key_text", "message"),
    [
        ("garbage\n", None, "cert.pem: unexpected text outside PEM blocks at line 1"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", None,
         "certificate #1 in {dir}/cert.pem: not a valid X.509 certificate"),
        (None, "garbage\n", "key.pem: not a PEM private key"),
        (None, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
         "key.pem: not a valid private key (unsupported or corrupt)"),
    ],
)
def test_file_issuer_malformed_files_name_the_file(byo_files, tmp_path, cert_text, key_text, message):
    fullchain, key_file, _ = byo_files
    (tmp_path / "cert.pem").write_text(cert_text or fullchain.read_text())
    (tmp_path / "key.pem").write_text(key_text or key_file.read_text())
    password = PASSWORD if key_text is None else None
    issuer = FileIssuer("corp", tmp_path / "cert.pem", tmp_path / "key.pem", password)
    with pytest.raises(CertificateError) as info:
        issuer.issue(REQUEST)
    assert message.format(dir=tmp_path) in str(info.value)
    assert "PRIVATE KEY" not in str(info.value) + repr(info.value)
    with pytest.raises(ConfigError):  # check() reports the same file as unusable configuration
        issuer.check()


def test_file_issuer_refuses_a_certificate_whose_key_no_library_reads(tmp_path):
    """A key type cryptography cannot read (here an Ed25519 key under an OID no library knows) is the
    file's error in `check` and at issue, not UnsupportedAlgorithm out of the key comparison."""
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "future")])
    start = datetime(2026, 1, 1, tzinfo=UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(start).not_valid_after(start + timedelta(days=90)).sign(key, None))
    der = cert.public_bytes(serialization.Encoding.DER).replace(b"\x06\x03\x2b\x65\x70", b"\x06\x03\x2b\x65\x72")
    (tmp_path / "cert.pem").write_text(certs.cert_to_pem(x509.load_der_x509_certificate(der)))
    write_key(tmp_path / "key.pem", key)
    issuer = FileIssuer("corp", tmp_path / "cert.pem", tmp_path / "key.pem")
    with pytest.raises(ConfigError, match=r"certificate #1 in .*cert.pem: its key .*1\.3\.101\.114"):
        issuer.check()
    with pytest.raises(CertificateError, match=r"cert.pem: its key"):
        issuer.issue(REQUEST)


def test_file_issuer_config_errors(byo_files, root, tmp_path):
    fullchain, key_file, _ = byo_files
    with pytest.raises(ConfigError, match="missing.pem: certificate file not found"):
        FileIssuer("corp", tmp_path / "missing.pem", key_file).issue(REQUEST)
    with pytest.raises(ConfigError, match="key.pem: wrong password or key is encrypted"):
        FileIssuer("corp", fullchain, key_file, b"nope").issue(REQUEST)
    with pytest.raises(ConfigError, match="key.pem: key does not match the certificate in"):
        stranger = write_key(tmp_path / "key.pem", ec.generate_private_key(ec.SECP256R1()))
        FileIssuer("corp", fullchain, stranger).check()
    assert PASSWORD.decode() not in repr(FileIssuer("corp", fullchain, key_file, PASSWORD))


# --- registry ------------------------------------------------------------------------------


def inventory_with(tmp_path: Path, issuers: dict) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"issuers": issuers}))
    return path


def test_registry_knows_the_built_in_types(root, tmp_path):
    settings = load_inventory(inventory_with(tmp_path, {"lab": {
        "type": "internal_ca", "ca_cert": str(root[0]), "ca_key_file": str(root[1]), "key_type": "rsa-2048",
        "validity": "30d"}})).issuers["lab"]
    issuer = build_issuer("lab", settings, secrets=None, clock=SYSTEM_CLOCK)
    assert isinstance(issuer, InternalCA) and isinstance(issuer, Issuer) and issuer.key_type is KeyType.RSA_2048
    assert issuer.validity == timedelta(days=30) and issuer.renewal_info("any") is None
    assert issuer.ocsp_url is None


def test_internal_ca_ocsp_url_comes_from_the_inventory(root, tmp_path):
    entry = {"type": "internal_ca", "ca_cert": str(root[0]), "ca_key_file": str(root[1])}
    settings = load_inventory(inventory_with(tmp_path, {"lab": {**entry, "ocsp_url": "http://ocsp.lab/"}}))
    issuer = build_issuer("lab", settings.issuers["lab"], secrets=None, clock=SYSTEM_CLOCK)
    assert isinstance(issuer, InternalCA) and issuer.ocsp_url == "http://ocsp.lab/"
    with pytest.raises(ConfigError, match=r"yaml: issuers.lab.internal_ca.ocsp_url: must be the http:// URL"):
        load_inventory(inventory_with(tmp_path, {"lab": {**entry, "ocsp_url": "ldap://ocsp.lab/"}}))


def test_unknown_issuer_type_lists_the_known_ones():
    with pytest.raises(ConfigError) as info:
        builder("vault")
    assert str(info.value).startswith("unknown issuer type 'vault'; known types: ")
    assert "files" in str(info.value) and "internal_ca" in str(info.value)


def test_every_type_the_inventory_accepts_has_a_builder_and_no_other():
    accepted = {get_args(model.model_fields["type"].annotation)[0] for model in get_args(get_args(IssuerSettings)[0])}
    assert accepted == set(BUILDERS) == {"internal_ca", "files", "acme"}


def test_an_issuer_is_built_once_until_its_settings_or_files_change(root, tmp_path):
    path = inventory_with(tmp_path, {"lab": {"type": "internal_ca", "ca_cert": str(root[0]),
                                             "ca_key_file": str(root[1])}})
    factory = IssuerFactory(lambda: None, SYSTEM_CLOCK)
    first = factory.issuer(load_inventory(path), "lab")
    assert factory.issuer(load_inventory(path), "lab") is first  # a reloaded, unchanged inventory
    stat_before = root[0].stat()
    os.utime(root[0], ns=(stat_before.st_atime_ns, stat_before.st_mtime_ns + 1_000_000))  # the CA file renewed
    renewed = factory.issuer(load_inventory(path), "lab")
    assert renewed is not first and factory.issuer(load_inventory(path), "lab") is renewed
    path.write_text(path.read_text().replace("ca_key_file", "validity: 7d\n    ca_key_file"))
    assert factory.issuer(load_inventory(path), "lab") is not renewed  # an edited entry


def test_unknown_key_type_is_a_config_error(root):
    with pytest.raises(ConfigError, match="unknown key type 'dsa-1024'; expected one of ecdsa-p256"):
        InternalCA("lab", *root, key_type="dsa-1024")


# --- the contract every issuer keeps -------------------------------------------------------


@pytest.fixture(params=["internal_ca_root", "internal_ca_intermediate", "files"])
def any_issuer(request, root, intermediate, byo_files) -> Issuer:
    if request.param == "internal_ca_root":
        return InternalCA(name="root", ca_cert=root[0], ca_key_file=root[1], clock=clock)
    if request.param == "internal_ca_intermediate":
        return InternalCA(
            name="inter", ca_cert=intermediate[0], ca_key_file=intermediate[1],
            ca_key_password=PASSWORD, clock=clock,
        )
    fullchain, key_file, bundle = byo_files
    return FileIssuer(name="byo", cert_file=fullchain, key_file=key_file,
                                   key_password=PASSWORD, ca_bundle=bundle)


def test_contract_issue_passes_validation(any_issuer):
    assert isinstance(any_issuer, Issuer)
    any_issuer.check()
    issued = any_issuer.issue(REQUEST)
    anchors = anchors_of(any_issuer)
    assert anchors, "every issuer under test here knows its trust anchors"
    parsed = validate_issued(issued, REQUEST, now=NOW, trust_anchors=anchors)
    assert parsed.fingerprint == certs.fingerprint(parsed.leaf)
    for text in (repr(issued), str(issued), repr(any_issuer)):
        assert "PRIVATE KEY" not in text and PASSWORD.decode() not in text


def test_contract_errors_are_rotation_errors(any_issuer, tmp_path):
    # Point the issuer at files that do not exist: it must fail with a RotationError naming them.
    for attr in ("ca_cert", "cert_file"):
        if hasattr(any_issuer, attr):
            setattr(any_issuer, attr, tmp_path / "gone.pem")
    with pytest.raises(RotationError, match="gone.pem"):
        any_issuer.check()


def test_a_tsig_secret_without_its_key_name_is_refused_at_load_not_silently_unused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without tsig_key_name the provider signed nothing: the secret configured was dropped and every update
    went out unauthenticated."""
    monkeypatch.setenv("T_TSIG", "c2VjcmV0LXRzaWcta2V5LWZvci10ZXN0cw==")
    path = tmp_path / "rotation.yaml"
    path.write_text(yaml.safe_dump({"clusters": {}, "issuers": {"le": {
        "type": "acme", "directory": "https://acme.example/directory",
        "dns": {"server": "127.0.0.1", "tsig_secret_env": "T_TSIG"}}}}))
    with pytest.raises(ConfigError, match="tsig_key_name") as caught:
        load_inventory(path)
    assert "c2VjcmV0" not in caught.value.message


@pytest.mark.parametrize("secret", ["AA==", "c2hvcnQ=", "MDEyMzQ1Njc4OWFiY2Rl"])  # 1, 5 and 15 bytes
def test_a_short_tsig_secret_is_refused_naming_the_key_not_the_value(secret: str) -> None:
    """An HMAC key of a few bytes is guessed offline from one signed update (256 tries for one byte): whoever
    guesses it writes the zone, and gets certificates for the cluster's names from the public CA."""
    from rotation.adapters.dns.rfc2136 import RFC2136Provider

    with pytest.raises(ConfigError, match="rotation-key") as caught:
        RFC2136Provider(server="127.0.0.1", tsig_key_name="rotation-key", tsig_secret=secret)
    assert "16 bytes" in caught.value.message and secret not in caught.value.message
    RFC2136Provider(server="127.0.0.1", tsig_key_name="rotation-key", tsig_secret="MDEyMzQ1Njc4OWFiY2RlZg==")
