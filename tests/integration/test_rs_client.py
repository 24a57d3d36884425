"""The RS REST client: every answer mapped to an error a caller can act on.

Real statuses come from the simulator over HTTPS; transport failures (timeouts, resets) are driven
through the same mapper with httpx.MockTransport, the one thing a real server cannot do on demand.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from support.certs import chain_with_intermediate
from support.cluster import start_simulator

from rotation.adapters.rs.client import RSClient
from rotation.core.errors import ClusterAuthError, ClusterRejected, ClusterUnavailable, ConfigError
from rotation.core.model import SecretPEM
from rotation.core.versions import parse_version
from rotation.simulator import ClusterSimulator


def client_for(sim: ClusterSimulator, *, user: str | None = None, password: str | None = None) -> RSClient:
    return RSClient(f"https://{sim.node_addresses[0]}:{sim.config.api_port}", user or sim.admin_username,
                    password or sim.admin_password, cluster="sim", verify=[sim.ca_path],
                    server_name=sim.config.fqdn, timeout=5)


def test_reads(simulator: ClusterSimulator) -> None:
    with client_for(simulator) as client:
        nodes = client.nodes()
        assert [n.uid for n in nodes] == [1, 2, 3] and {n.status for n in nodes} == {"active"}
        assert client.software_version(nodes) == "7.22.2-14"
        assert client.cluster_info()["name"] == simulator.config.fqdn
        tls_dbs = [d for d in client.databases() if d.tls]
        assert {d.port for d in tls_dbs} == {12000, 12001}
        pairs = client.certificates()
        assert set(pairs) >= {"api", "cm", "proxy", "syncer", "metrics_exporter"}
        assert isinstance(pairs["proxy"].key, SecretPEM) and "PRIVATE" not in repr(pairs["proxy"])


def test_401_is_an_auth_error(simulator: ClusterSimulator) -> None:
    with client_for(simulator, password="wrong") as client, pytest.raises(ClusterAuthError) as info:
        client.nodes()
    assert info.value.status == 401 and not info.value.retryable
    assert "wrong" not in str(info.value)


def test_403_for_a_role_without_update_cluster(simulator: ClusterSimulator) -> None:
    chain, key = chain_with_intermediate()
    with client_for(simulator, user=simulator.viewer_username, password=simulator.viewer_password) as client:
        assert client.nodes()  # viewers may read
        with pytest.raises(ClusterRejected) as info:
            client.update_certificate("proxy", "".join(chain), SecretPEM(key), bulk=True)
    assert info.value.status == 403 and info.value.error_code == "insufficient_permissions"


@pytest.mark.parametrize(
    ("name", "mutate", "status", "code"),
    [
        ("ldap", None, 403, "unknown_certificate"),
        ("proxy", "garbage", 400, "invalid_certificate"),
        ("proxy", "other_key", 400, "key_mismatch"),
        ("proxy", "expired", 406, "cert_expired"),
    ],
)
@pytest.mark.parametrize("bulk", [True, False])
def test_final_errors_carry_the_servers_error_code(
    simulator: ClusterSimulator, name: str, mutate: str | None, status: int, code: str, bulk: bool
) -> None:
    chain, key = chain_with_intermediate(days=(-30, -1) if mutate == "expired" else (-1, 60))
    certificate = "".join(chain)
    if mutate == "garbage":
        certificate = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    if mutate == "other_key":
        key = chain_with_intermediate()[1]
    before = simulator.cluster_cert_pem("proxy")
    with client_for(simulator) as client, pytest.raises(ClusterRejected) as info:
        client.update_certificate(name, certificate, SecretPEM(key), bulk=bulk)
    assert info.value.status == status and info.value.error_code == code
    assert code in str(info.value) and not info.value.retryable
    assert "PRIVATE KEY" not in str(info.value)
    assert simulator.cluster_cert_pem("proxy") == before


def test_only_2xx_is_success_a_redirect_names_its_target(simulator: ClusterSimulator) -> None:
    chain, key = chain_with_intermediate()
    simulator.fail_requests(1, 302, method="PUT", location="https://user:pw@login.example.test/sso")
    simulator.fail_requests(1, 307, method="GET", path="/v1/cluster", location="/maintenance")
    with client_for(simulator) as client:
        with pytest.raises(ClusterRejected) as info:
            client.update_certificate("proxy", "".join(chain), SecretPEM(key), bulk=True)
        assert info.value.status == 302 and not info.value.retryable
        assert "redirecting to https://user:***@login.example.test/sso" in info.value.message
        with pytest.raises(ClusterRejected, match=r"HTTP 307, redirecting to https://[\d.]+:9443/maintenance"):
            client.software_version([])  # GET /v1/cluster: an error, not an AttributeError
    assert not simulator.received_update_bodies  # the redirected PUT applied nothing


def test_404_for_an_unknown_node(simulator: ClusterSimulator) -> None:
    with client_for(simulator) as client, pytest.raises(ClusterRejected) as info:
        client._request("GET", "/v1/nodes/99", action="GET /v1/nodes/99")
    assert info.value.status == 404


@pytest.mark.parametrize("status", [409, 500])
def test_409_and_5xx_are_retryable(simulator: ClusterSimulator, status: int) -> None:
    chain, key = chain_with_intermediate()
    simulator.fail_next(1, status)
    with client_for(simulator) as client, pytest.raises(ClusterUnavailable) as info:
        client.update_certificate("proxy", "".join(chain), SecretPEM(key), bulk=True)
    assert info.value.status == status and info.value.retryable


def test_bulk_endpoint_absent_before_7_22_2(tmp_path: Path) -> None:
    sim = start_simulator(tmp_path, version="7.22.0-95")
    try:
        chain, key = chain_with_intermediate()
        with client_for(sim) as client:
            with pytest.raises(ClusterRejected) as info:
                client.update_certificate("proxy", "".join(chain), SecretPEM(key), bulk=True)
            assert info.value.status == 404
            assert client.update_certificate("proxy", "".join(chain), SecretPEM(key), bulk=False) == (
                "/v1/cluster/update_cert")
    finally:
        sim.stop()


def _mock_client(handler) -> RSClient:  # noqa: ANN001
    return RSClient("https://rs.invalid:9443", "u", "p", cluster="mock", transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    "exc",
    [httpx.ReadTimeout("read timed out"), httpx.ConnectTimeout("connect timed out"),
     httpx.RemoteProtocolError("peer closed connection"), httpx.ConnectError("connection reset by peer")],
)
def test_timeouts_and_resets_are_retryable(exc: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    with _mock_client(handler) as client, pytest.raises(ClusterUnavailable) as info:
        client.nodes()
    assert info.value.retryable and "mock" in str(info.value)


def test_untrusted_rest_api_is_a_clear_final_error(simulator: ClusterSimulator) -> None:
    client = RSClient(f"https://{simulator.node_addresses[0]}:{simulator.config.api_port}", "u", "p",
                      cluster="sim", verify=True, server_name=simulator.config.fqdn, timeout=5)
    with client, pytest.raises(ClusterRejected, match="TLS verification") as info:
        client.nodes()
    assert not info.value.retryable


def test_missing_verify_bundle_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="verify bundle"):
        RSClient("https://127.0.0.1:9443", "u", "p", verify=[tmp_path / "missing.pem"])


def test_version_parsing() -> None:
    assert parse_version("7.22.2-14") == (7, 22, 2, 14)
    assert parse_version("7.4.2-54") < (7, 22, 2) <= parse_version("7.22.2-14")
    assert parse_version(None) == ()
