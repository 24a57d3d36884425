"""OCSP values and decisions (pure), and the RS client's OCSP calls through its one error mapper."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from rotation.adapters.rs.client import RSClient
from rotation.core.errors import ClusterRejected, ClusterUnavailable
from rotation.core.ocsp import MAX_FIELD, OcspConfig, OcspStatus, missing_url_problem, responder_urls
from rotation.usecases.ocsp_status import ProxyOcsp

URL = "http://ocsp.example.com/"


def leaf(*access: x509.AccessDescription) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "proxy")])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)))
    if access:
        builder = builder.add_extension(x509.AuthorityInformationAccess(list(access)), critical=False)
    return builder.sign(key, hashes.SHA256())


OCSP = x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(URL))
CA_ISSUERS = x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                    x509.UniformResourceIdentifier("http://ca.example.com/ca.der"))


def test_responder_urls_are_the_ocsp_entries_of_the_aia() -> None:
    assert responder_urls(leaf(CA_ISSUERS, OCSP)) == (URL,)
    assert responder_urls(leaf(CA_ISSUERS)) == ()  # an AIA with CA issuers only, as Let's Encrypt's
    assert responder_urls(leaf()) == ()


@pytest.mark.parametrize(("stapling", "access", "opted_in", "refused"), [
    (True, (), False, True),
    (True, (), True, False),  # the rotation turns stapling off instead
    (True, (OCSP,), False, False),
    (False, (), False, False),
])
def test_a_certificate_without_ocsp_url_is_refused_only_while_stapling(
        stapling: bool, access: tuple[x509.AccessDescription, ...], opted_in: bool, refused: bool) -> None:
    problem = missing_url_problem("east", OcspConfig(stapling), leaf(*access), opted_in)
    assert (problem is not None) is refused
    if problem:
        assert "clusters.east.ocsp: disable_when_missing" in problem and "internal_ca: ocsp_url" in problem


def test_what_rs_answers_is_read_defensively() -> None:
    assert OcspConfig.from_api({"ocsp_functionality": "true"}).stapling is False  # only a JSON true is on
    assert OcspConfig.from_api([]) == OcspConfig(False)
    status = OcspStatus.from_api({"cert_status": "REVOKED", "responder_url": "x" * 5000,
                                  "revocation_time": "Sat, 01 Aug 2026 12:00:00 GMT"})
    assert not status.good and len(status.responder_url or "") == MAX_FIELD
    assert status.describe().startswith("REVOKED (revoked at Sat, 01 Aug 2026 12:00:00 GMT) from xxx")
    assert OcspStatus.from_api(None).describe() == "no answer yet"


def test_check_rows_name_the_problems() -> None:
    good = OcspStatus("GOOD", URL)
    assert ProxyOcsp.of("east", OcspConfig(True, URL), good).problem is None
    assert "clients refuse" in (ProxyOcsp.of("east", OcspConfig(True, URL), OcspStatus("UNKNOWN", URL)).problem or "")
    assert "nothing to staple" in (ProxyOcsp.of("east", OcspConfig(True), OcspStatus()).problem or "")
    assert ProxyOcsp.of("east", OcspConfig(False), OcspStatus("REVOKED", URL)).problem is None  # not stapled
    assert ProxyOcsp.of("east", OcspConfig(True, URL), OcspStatus()).problem is None  # no answer yet


def _client(status: int, body: dict) -> RSClient:
    def answer(request: httpx.Request) -> httpx.Response:  # a stream, as from the network: read bounded
        return httpx.Response(status, headers={"Content-Type": "application/json"},
                              stream=httpx.ByteStream(json.dumps(body).encode()))

    return RSClient("https://rs.invalid:9443", "u", "p", cluster="mock", transport=httpx.MockTransport(answer))


def test_ocsp_calls_go_through_the_one_mapper() -> None:
    with _client(406, {"error_code": "ocsp_unsupported_by_capability", "message": "Not all nodes support OCSP"}
                 ) as client, pytest.raises(ClusterRejected) as info:
        client.ocsp_config()
    assert info.value.error_code == "ocsp_unsupported_by_capability" and "GET /v1/ocsp" in str(info.value)
    with _client(500, {"error_code": "invalid_ocsp_response", "description": "bad signature"}
                 ) as client, pytest.raises(ClusterUnavailable, match=r"POST /v1/ocsp/test failed with HTTP 500 "
                                                                   r"\(invalid_ocsp_response: bad signature\)"):
        client.test_ocsp()
    with _client(200, {"ocsp_functionality": False}) as client:
        assert client.update_ocsp({"ocsp_functionality": False}) == {"ocsp_functionality": False}
