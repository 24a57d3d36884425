"""Answers of the outside world that are complete but hostile: an RS or ACME error whose text is a megabyte
or not text at all, a Retry-After of centuries. Each must end as one bounded error of the one exception
tree (``rotation.core.errors``), never as a foreign exception or a message that fills the history.

A real HTTPS server (``hostile.HostileServer``) sends each answer exactly as written here.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.hostile import HOST_NAME, HostileServer, answer

from rotation.adapters.cert_login import prove_login
from rotation.adapters.cluster import ClusterSession
from rotation.adapters.issuers.acme.issuer import AcmeIssuer
from rotation.adapters.issuers.internal_ca import InternalCA
from rotation.adapters.rs.client import RSClient
from rotation.adapters.secrets import LocalSecretStore, SecretBox
from rotation.config.clusters import ClusterSettings
from rotation.core import retry
from rotation.core.errors import ClusterAPIError, ClusterAuthError, ClusterRejected, ClusterUnavailable, IssuerError
from rotation.core.model import CertName, CertRequest, ClientCertificate

MiB = 1024 * 1024
JSON = {"Content-Type": "application/json"}
PROBLEM = {"Content-Type": "application/problem+json"}


def rs_client(server: HostileServer) -> RSClient:
    return RSClient(server.url, "admin@example.com", "pw", cluster="hostile", verify=[server.ca_path],
                    server_name=HOST_NAME, timeout=5.0)


def acme_issuer(server: HostileServer) -> AcmeIssuer:
    return AcmeIssuer("hostile", server.url + "/directory", challenge="http-01", ca_bundle=server.ca_path,
                      request_timeout=timedelta(seconds=5))


def test_a_megabyte_rs_error_description_is_cut_in_the_message(hostile: HostileServer) -> None:
    body = json.dumps({"error_code": "E" * MiB, "description": "d" * MiB}).encode()
    hostile.behaviour = answer(hostile, "500 Internal Server Error", JSON, body)
    with rs_client(hostile) as client, pytest.raises(ClusterUnavailable) as info:
        client.nodes()
    assert len(info.value.message) < 2000, len(info.value.message)
    assert "HTTP 500" in info.value.message


@pytest.mark.parametrize("field", ["description", "message", "error_code"])
@pytest.mark.parametrize("status", ["401 Unauthorized", "400 Bad Request", "503 Service Unavailable"])
def test_an_rs_error_whose_fields_are_not_text_is_still_our_error(hostile: HostileServer, status: str,
                                                                  field: str) -> None:
    body = json.dumps({field: {"nested": [1, 2]}, **({} if field == "description" else {"description": 7})}).encode()
    hostile.behaviour = answer(hostile, status, JSON, body)
    with rs_client(hostile) as client, pytest.raises(ClusterAuthError if status.startswith("401") else Exception
                                                     ) as info:
        client.nodes()
    assert type(info.value).__module__ == "rotation.core.errors", repr(info.value)
    assert f"HTTP {status[:3]}" in info.value.message


@pytest.mark.parametrize("header", [b"9" * 30, b"\xc2\xb2", b"1e400"], ids=["centuries", "superscript", "exponent"])
def test_an_rs_retry_after_of_centuries_or_not_a_number_is_bounded(hostile: HostileServer, header: bytes) -> None:
    hostile.behaviour = answer(hostile, "503 Service Unavailable", {**JSON, "Retry-After": header}, b"{}")
    with rs_client(hostile) as client, pytest.raises(ClusterUnavailable) as info:
        client.nodes()
    wait = info.value.retry_after
    assert wait is None or 0 <= wait <= retry.MAX_RETRY_AFTER
    # what the task layer and the backoff do with it must still work
    retry.rotation_countdown(0, wait)
    backoff = retry.backoff_delay(1, timedelta(minutes=5), timedelta(hours=6), wait)
    assert datetime.now(UTC) + backoff > datetime.now(UTC)


def test_a_megabyte_acme_problem_detail_is_cut_in_the_message(hostile: HostileServer) -> None:
    problem = {"type": "urn:ietf:params:acme:error:malformed", "detail": "x" * MiB}
    hostile.behaviour = answer(hostile, "400 Bad Request", PROBLEM, json.dumps(problem).encode())
    with pytest.raises(IssuerError) as info:
        acme_issuer(hostile).check()
    assert "malformed" in info.value.message
    assert len(info.value.message) < 2000, len(info.value.message)
    assert len(json.dumps(info.value.problem)) < 2000  # it goes into the rotation's record


@pytest.mark.parametrize("directory", [[], "a string", {}], ids=["array", "string", "no-urls"])
def test_an_acme_directory_that_is_not_one_is_an_issuer_error(hostile: HostileServer, directory: object,
                                                              tmp_path: Path) -> None:
    hostile.behaviour = answer(hostile, "200 OK", JSON, json.dumps(directory).encode())
    issuer = acme_issuer(hostile)
    issuer._secret_store = LocalSecretStore(tmp_path, SecretBox([SecretBox.generate_key().encode()]))
    for call in (issuer.check, lambda: issuer.issue(CertRequest("hostile", CertName.API, (HOST_NAME,)))):
        with pytest.raises(IssuerError, match="not an ACME directory"):
            call()


def test_an_acme_answer_of_the_wrong_shape_is_an_issuer_error(hostile: HostileServer, tmp_path: Path) -> None:
    # One answer to everything: the directory, the nonce, the new account and the new order, which is
    # then an order without authorizations.
    url = hostile.url + "/directory"
    directory = {"newNonce": url, "newAccount": url, "newOrder": url}
    hostile.behaviour = answer(hostile, "201 Created", {**JSON, "Location": url, "Replay-Nonce": "bm9uY2U"},
                               json.dumps(directory).encode())
    issuer = acme_issuer(hostile)
    issuer._secret_store = LocalSecretStore(tmp_path, SecretBox([SecretBox.generate_key().encode()]))
    with pytest.raises(IssuerError) as info:
        issuer.issue(CertRequest("hostile", CertName.API, (HOST_NAME,)))
    assert "does not follow ACME" in info.value.message and not info.value.retryable, info.value.message


@pytest.mark.parametrize(("method", "body"), [
    ("nodes", {"uid": 1}), ("nodes", [{"addr": "10.0.0.1"}]), ("nodes", [{"uid": "one"}]), ("nodes", [7]),
    ("databases", [5]), ("databases", [{"uid": 1, "endpoints": [{"port": "x"}]}]), ("databases", {"uid": 1}),
    ("certificates", [1]), ("software_version", [{"uid": 1, "software_version": 8}]),
], ids=lambda value: value if isinstance(value, str) else json.dumps(value))
def test_an_rs_answer_of_another_shape_is_a_cluster_error(hostile: HostileServer, method: str, body: object) -> None:
    # 200 with JSON, but not what the RS docs describe (another service on the port, a proxy's status page)
    hostile.behaviour = answer(hostile, "200 OK", JSON, json.dumps(body).encode())
    with rs_client(hostile) as client, pytest.raises(ClusterRejected) as info:
        getattr(client, method)()
    assert "not what RS documents" in info.value.message and not info.value.retryable


@pytest.mark.parametrize(("cluster", "bdbs"), [
    ({"name": "hostile.test", "cm_port": "eighty"}, []),
    ({"name": "hostile.test"}, [{"name": "db", "endpoints": [{"port": 12000}]}]),  # a database without uid
], ids=["cm_port", "bdb-uid"])
def test_a_cluster_view_from_answers_of_another_shape_is_a_cluster_error(hostile: HostileServer, cluster: dict,
                                                                         bdbs: list) -> None:
    answers = {"/v1/cluster": cluster, "/v1/nodes": [{"uid": 1, "addr": "127.0.0.1", "software_version": "7.4.2-1"}],
               "/v1/bdbs": bdbs}

    def behave(conn, exchange):  # noqa: ANN001, ANN202
        answer(hostile, "200 OK", JSON, json.dumps(answers[exchange.path]).encode())(conn, exchange)

    hostile.behaviour = behave
    settings = ClusterSettings(url=hostile.url, fqdn=HOST_NAME, username="admin@example.com", password_env="PW")
    with ClusterSession("hostile", settings, rs_client(hostile)) as session, pytest.raises(ClusterRejected) as info:
        session.view()
    assert "not what RS documents" in info.value.message


def test_a_password_written_into_the_cluster_url_is_in_no_error(hostile: HostileServer) -> None:
    secret = "s3cret-in-the-url"
    hostile.behaviour = answer(hostile, "500 Internal Server Error", JSON, b'{"error_code": "oops"}')
    url = hostile.url.replace("https://", f"https://admin:{secret}@")
    with RSClient(url, "admin@example.com", "pw", cluster="hostile", verify=[hostile.ca_path],
                  server_name=HOST_NAME, timeout=5.0) as client, pytest.raises(ClusterUnavailable) as answered:
        client.nodes()
    closed = socket.create_server((hostile.address, 0))  # a port nothing listens on any more
    url = f"https://admin:{secret}@{hostile.address}:{closed.getsockname()[1]}"
    closed.close()
    with RSClient(url, "admin@example.com", "pw", cluster="hostile", verify=[hostile.ca_path],
                  server_name=HOST_NAME, timeout=5.0) as client, pytest.raises(ClusterUnavailable) as unreachable:
        client.nodes()
    for error in (answered.value, unreachable.value):
        assert secret not in f"{error.message} {error.url} {error!r}", error.message
    assert hostile.address in unreachable.value.message


DEEP = b"[" * 100_000 + b"]" * 100_000  # 200 kB of JSON nested deeper than Python's decoder recurses


@pytest.mark.parametrize("status", ["200 OK", "500 Internal Server Error"])
def test_an_rs_answer_nested_too_deep_is_a_cluster_error(hostile: HostileServer, status: str) -> None:
    hostile.behaviour = answer(hostile, status, JSON, DEEP)
    with rs_client(hostile) as client, pytest.raises(ClusterAPIError) as info:
        client.nodes()
    assert len(info.value.message) < 2000


def test_an_acme_answer_nested_too_deep_is_an_issuer_error(hostile: HostileServer) -> None:
    hostile.behaviour = answer(hostile, "200 OK", JSON, DEEP)
    with pytest.raises(IssuerError):
        acme_issuer(hostile).check()


WINDOW = {"suggestedWindow": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}}


@pytest.mark.parametrize(("renewal_info", "retry_after"), [
    ([1], "60"), ({"suggestedWindow": [1]}, "60"), ("x", "60"), (WINDOW, "9" * 30),
], ids=["array", "window-array", "string", "retry-after-of-centuries"])
def test_an_ari_answer_of_the_wrong_shape_is_an_issuer_error(hostile: HostileServer, ca_files: tuple[Path, Path],
                                                             renewal_info: object, retry_after: str) -> None:
    base = hostile.url
    directory = {"newNonce": base + "/nonce", "newAccount": base + "/account", "newOrder": base + "/order",
                 "renewalInfo": base + "/renewal-info"}

    def behave(conn, exchange):  # noqa: ANN001, ANN202
        body = directory if exchange.path == "/directory" else renewal_info
        answer(hostile, "200 OK", {**JSON, "Retry-After": retry_after}, json.dumps(body).encode())(conn, exchange)

    hostile.behaviour = behave
    leaf = InternalCA("ca", *ca_files).issue(CertRequest("hostile", CertName.API, (HOST_NAME,))).leaf_pem
    with pytest.raises(IssuerError):
        acme_issuer(hostile).renewal_info(leaf)


@pytest.mark.parametrize("method", ["nodes", "databases", "certificates", "database_certificates"])
def test_an_rs_read_answered_by_a_web_page_is_not_an_empty_cluster(hostile: HostileServer, method: str) -> None:
    # a load balancer's maintenance page, 200 OK: no nodes, no databases, no certificates would be a lie
    hostile.behaviour = answer(hostile, "200 OK", {"Content-Type": "text/html"}, b"<html>maintenance</html>")
    with rs_client(hostile) as client, pytest.raises(ClusterRejected) as info:
        getattr(client, method)()
    assert "not JSON" in info.value.message


@pytest.mark.parametrize(("status", "retryable"), [("404 Not Found", False), ("401 Unauthorized", False),
                                                   ("503 Service Unavailable", True), ("429 Too Many Requests", True)])
def test_an_acme_error_page_that_is_not_a_problem_document_is_classified_by_its_status(
    hostile: HostileServer, status: str, retryable: bool
) -> None:
    # a wrong directory URL (404 page) will not start working by itself; a 503 page may
    hostile.behaviour = answer(hostile, status, {"Content-Type": "text/html"}, b"<html>" + status.encode() + b"</html>")
    with pytest.raises(IssuerError) as info:
        acme_issuer(hostile).check()
    assert info.value.retryable is retryable
    assert f"HTTP {status[:3]}" in info.value.message, info.value.message


@pytest.mark.parametrize("address", ["10.0.0.1\n", "10.0.0.1:9443", "a\u0000b"], ids=["newline", "port", "nul"])
def test_a_node_address_that_is_no_address_is_that_nodes_refusal(hostile: HostileServer, ca_files: tuple[Path, Path],
                                                                  address: str) -> None:
    answers = {"/v1/cluster": {"name": HOST_NAME},
               "/v1/nodes": [{"uid": 1, "addr": address, "software_version": "8.0.2-1"}], "/v1/bdbs": [],
               "/v1/bdbs/certificates?page=1&page_size=1000": []}

    def behave(conn, exchange):  # noqa: ANN001, ANN202
        answer(hostile, "200 OK", JSON, json.dumps(answers[exchange.path]).encode())(conn, exchange)

    hostile.behaviour = behave
    request = CertRequest("hostile", CertName.API, (), subject="CN=rotation", client=True)
    issued = InternalCA("ca", *ca_files).issue(request)
    client_cert = ClientCertificate(issued.fullchain_pem, issued.key_pem)
    settings = ClusterSettings(url=hostile.url, fqdn=HOST_NAME, username="admin@example.com", password_env="PW",
                               verify=hostile.ca_path, tls_server_name=HOST_NAME)
    with ClusterSession("hostile", settings, rs_client(hostile)) as session:
        (login,) = prove_login(session, client_cert)
    assert not login.ok and login.error
