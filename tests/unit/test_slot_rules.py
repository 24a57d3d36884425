"""rotation.core.slot_rules: the role of every certificate name, its EKU/key rules, and the gaps to RS's
documented profile, with real certificates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rotation.core.slot_rules import Role, documented_sans, profile_gaps, role_of, role_problems

FQDN = "cluster.example.com"
NOW = datetime(2030, 6, 1, tzinfo=UTC)
SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
FOUR = documented_sans(FQDN)


def leaf(*, ekus=(SERVER, CLIENT), cn: str | None = FQDN, rsa_key: bool = False, encipherment: bool = True,
         sans=FOUR) -> x509.Certificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if rsa_key else \
        ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    usage = dict.fromkeys(["content_commitment", "data_encipherment", "key_agreement", "key_cert_sign",
                           "crl_sign", "encipher_only", "decipher_only"], False)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(x509.Name([]))
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(NOW).not_valid_after(NOW + timedelta(days=45))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=not cn)
            .add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=encipherment, **usage), True)
            .sign(key, hashes.SHA256()))


@pytest.mark.parametrize(("name", "role"), [
    ("cm", Role.SERVER), ("api", Role.SERVER), ("proxy", Role.SERVER), ("metrics_exporter", Role.SERVER),
    ("db:orders", Role.SERVER), ("syncer", Role.CLIENT), ("ldap_client", Role.CLIENT),
    ("rest_client", Role.CLIENT), ("ccs_internode_encryption", Role.INTERNODE),
    ("data_internode_encryption", Role.INTERNODE), ("gizmo_2027", Role.UNKNOWN),
])
def test_every_name_has_a_role(name: str, role: Role) -> None:
    assert role_of(name) is role


def test_lets_encrypt_tlsserver_shape_fills_server_slots_only() -> None:
    tlsserver = leaf(ekus=(SERVER,), cn=None, rsa_key=True, encipherment=False)
    assert role_problems(tlsserver, "proxy") == []
    assert role_problems(tlsserver, "cm") == []
    (problem,) = role_problems(tlsserver, "syncer")
    assert "lacks clientAuth" in problem and "TLS client" in problem
    assert len(role_problems(tlsserver, "ccs_internode_encryption")) == 1
    assert len(role_problems(tlsserver, "unknown_name")) == 1


def test_internode_needs_rsa_and_both_ekus() -> None:
    (problem,) = role_problems(leaf(), "data_internode_encryption")
    assert "need an RSA key, not ECDSA P-256" in problem
    assert role_problems(leaf(rsa_key=True), "data_internode_encryption") == []


def test_profile_gaps_name_every_miss_of_the_documented_profile() -> None:
    assert profile_gaps(leaf(rsa_key=True), "api", FQDN) == []
    gaps = profile_gaps(leaf(ekus=(SERVER,), cn=None, rsa_key=True, encipherment=False, sans=(FQDN,)), "api", FQDN)
    assert [g.split(" ")[0] for g in gaps] == ["extendedKeyUsage", "the", "keyUsage", "subjectAltName"]
    assert "lacks clientAuth" in gaps[0] and "no CN" in gaps[1]
    assert "*.internal.cluster.example.com" in gaps[3]
    assert profile_gaps(leaf(ekus=(SERVER,)), "db:orders", FQDN) == []  # not a cluster certificate
    assert len(profile_gaps(leaf(cn="other.example.com"), "cm", FQDN, sans=False)) == 1
    # an EC key needs no keyEncipherment
    assert profile_gaps(leaf(encipherment=False), "cm", FQDN) == []
