"""The ACME issuer against real Pebble (and a real BIND 9 for DNS-01) and the simulated cluster.

Pebble 2.4.0 has no ARI and no rate limits: those paths run against a tiny local HTTP server
speaking just enough ACME (real HTTP through the real ``acme`` client).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import secrets
import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from acme import messages
from support.acme import EAB_KID, TSIG_NAME, ZONE, FakeCA, NamedServer, PebbleServer
from support.clock import FakeClock
from support.cluster import start_simulator, write_inventory
from support.processes import free_port
from support.rotate import rotate_here

from rotation.adapters.clock import SYSTEM_CLOCK
from rotation.adapters.dns.rfc2136 import RFC2136Provider
from rotation.adapters.issuers.acme.account import open_account
from rotation.adapters.issuers.acme.issuer import AcmeIssuer, translate_error
from rotation.adapters.issuers.factory import build_issuer
from rotation.adapters.issuers.internal_ca import InternalCA
from rotation.adapters.secrets import LocalSecretStore, SecretBox
from rotation.config import Inventory, load_inventory
from rotation.core import certs
from rotation.core.errors import IssuerError
from rotation.core.model import CertName, CertRequest, KeyType, Outcome, RotationRecord
from rotation.core.renewal import ARI_RECHECK_MAX, ARI_RECHECK_MIN
from rotation.core.retry import MAX_RETRY_AFTER, backoff_delay, rotation_countdown
from rotation.simulator import ClusterSimulator
from rotation.usecases.context import ServiceContext
from rotation.usecases.rotate.run import RotationOptions
from rotation.usecases.scan import scan_cluster
from rotation.usecases.status import service_status

HOSTS = (ZONE, f"*.{ZONE}")


def acme_inventory(tmp_path: Path, sim: ClusterSimulator, ca_files: tuple[Path, Path], named: NamedServer,  # noqa: F811
                   server: PebbleServer, *, tsig_secret: str | None = None,
                   certificates: dict | None = None, **issuer: object) -> Inventory:
    path = write_inventory(tmp_path / "rotation.yaml", sim, ca_files)
    data = yaml.safe_load(path.read_text())
    (tmp_path / "tsig.secret").write_text(tsig_secret or named.tsig_secret)
    settings: dict[str, object] = {
        "type": "acme", "directory": server.directory_url, "email": "ops@example.com",
        "ca_bundle": str(server.tls_cert), "trust_roots": str(server.root_file), "order_timeout": "30s",
        "dns": {"provider": "rfc2136", "server": named.address, "tsig_key_name": TSIG_NAME,
                "tsig_secret_file": "tsig.secret", "propagation_servers": [named.address],
                "propagation_timeout": "10s"},
    }
    settings.update(issuer)
    data["issuers"]["pebble"] = settings
    data["clusters"]["sim"]["issuer"] = "pebble"
    if certificates is not None:
        data["clusters"]["sim"]["certificates"] = certificates
    path.write_text(yaml.safe_dump(data))
    return load_inventory(path)


def rotate(inventory: Inventory, cert: str, **options: object) -> RotationRecord:
    (record,) = rotate_here(inventory, "sim", [cert], RotationOptions(poll_interval=0.1, **options))  # type: ignore[arg-type]
    return record


def verified_fingerprint(host: str, port: int, sni: str, root: Path) -> str:
    """Independent check: a verifying handshake with Pebble's root as the only trust anchor."""
    context = ssl.create_default_context(cafile=str(root))
    with socket.create_connection((host, port), timeout=5) as raw, context.wrap_socket(raw, server_hostname=sni) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der
    return certs.der_fingerprint(der)


def dns_provider(server: NamedServer) -> RFC2136Provider:
    """DNS-01 through the test's BIND, polled fast."""
    return RFC2136Provider(server=server.address, tsig_key_name=TSIG_NAME, tsig_secret=server.tsig_secret,
                           propagation_servers=[server.address], poll_interval=0.1)


def served_by_all_nodes(sim: ClusterSimulator, cert: CertName, root: Path) -> set[str]:
    if cert is CertName.PROXY:
        return {verified_fingerprint(a, 12000, f"redis-12000.{ZONE}", root) for a in sim.node_addresses}
    return {verified_fingerprint(a, sim.config.api_port, ZONE, root) for a in sim.node_addresses}


# --- the happy paths -------------------------------------------------------------------------


def test_proxy_wildcard_and_api_renewed_by_dns01_and_served_everywhere(
    tmp_path: Path, simulator: ClusterSimulator, ca_files: tuple[Path, Path], state_dir: Path,
    named: NamedServer, pebble: PebbleServer,  # noqa: F811
) -> None:
    inventory = acme_inventory(tmp_path, simulator, ca_files, named, pebble)
    for cert in (CertName.PROXY, CertName.API):
        record = rotate(inventory, str(cert))
        assert record.outcome is Outcome.VERIFIED, record.error
        assert record.issuer == "pebble"
        assert served_by_all_nodes(simulator, cert, pebble.root_file) == {record.new_fingerprint}
        leaf = certs.load_certificates(simulator.cluster_cert_pem(str(cert)), where="sim")[0]
        assert set(certs.subject_alt_names(leaf)) == set(HOSTS)
    assert named.txt() == set()  # every TXT record removed
    # The REST client of a new process trusts the new api certificate through trust_roots.
    record = rotate(load_inventory(inventory.source), "metrics_exporter")
    assert record.outcome is Outcome.VERIFIED, record.error


def test_http01_through_the_standalone_responder(
    tmp_path: Path, simulator: ClusterSimulator, ca_files: tuple[Path, Path], state_dir: Path,
    named: NamedServer, pebble: PebbleServer,  # noqa: F811
) -> None:
    inventory = acme_inventory(tmp_path, simulator, ca_files, named, pebble, challenge="http-01", dns=None,
                               http01={"address": "127.0.0.1", "port": pebble.http_port},
                               certificates={"api": {"hosts": [ZONE]}})
    record = rotate(inventory, "api")
    assert record.outcome is Outcome.VERIFIED, record.error
    assert served_by_all_nodes(simulator, CertName.API, pebble.root_file) == {record.new_fingerprint}
    with socket.socket() as probe:  # the responder only runs while an order is open
        assert probe.connect_ex(("127.0.0.1", pebble.http_port)) != 0


def test_http01_refuses_a_wildcard_before_ordering(tmp_path: Path, state_dir: Path, pebble: PebbleServer) -> None:  # noqa: F811
    issuer = AcmeIssuer("p", pebble.directory_url, challenge="http-01", ca_bundle=pebble.tls_cert)
    with pytest.raises(IssuerError, match="needs challenge dns-01"):
        issuer.issue(CertRequest("sim", CertName.PROXY, HOSTS))


def test_external_account_binding_required_by_pebble(
    tmp_path: Path, state_dir: Path, named: NamedServer, pebble_eab: PebbleServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dns = dns_provider(named)
    common = {"ca_bundle": pebble_eab.tls_cert, "trust_roots": pebble_eab.root_file, "dns_provider": dns}
    without = AcmeIssuer("no-eab", pebble_eab.directory_url, "ops@example.com", **common)  # type: ignore[arg-type]
    with pytest.raises(IssuerError) as caught:
        without.issue(CertRequest("sim", CertName.API, (ZONE,)))
    assert caught.value.problem and caught.value.problem["type"].endswith("externalAccountRequired")
    assert "externalAccountRequired" in caught.value.message and not caught.value.retryable

    monkeypatch.setenv("PEBBLE_EAB_KEY", pebble_eab.eab_hmac_key or "")
    data = {"issuers": {"eab": {"type": "acme", "directory": pebble_eab.directory_url, "email": "ops@example.com",
                                "eab_kid": EAB_KID, "eab_hmac_key_env": "PEBBLE_EAB_KEY",
                                "ca_bundle": str(pebble_eab.tls_cert), "trust_roots": str(pebble_eab.root_file),
                                "dns": {"server": named.address, "tsig_key_name": TSIG_NAME,
                                        "tsig_secret_env": "TSIG_SECRET", "propagation_servers": [named.address]}}}}
    monkeypatch.setenv("TSIG_SECRET", named.tsig_secret)
    (tmp_path / "inv.yaml").write_text(yaml.safe_dump(data))
    issuer = build_issuer("eab", load_inventory(tmp_path / "inv.yaml").issuers["eab"], secrets=None, clock=SYSTEM_CLOCK)
    issuer.check()
    issued = issuer.issue(CertRequest("sim", CertName.PROXY, HOSTS))
    chain = certs.load_certificates(issued.fullchain_pem, where="issued")
    assert certs.issued_by(chain[-1], certs.load_certificates(pebble_eab.root_pem, where="root")[0])
    assert named.txt() == set()


def test_account_is_stored_encrypted_reused_and_reregistered_when_deactivated(
    tmp_path: Path, state_dir: Path, named: NamedServer, pebble: PebbleServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    dns = dns_provider(named)
    store = LocalSecretStore(tmp_path / "accounts", SecretBox([SecretBox.generate_key().encode()]))
    issuer = AcmeIssuer("pebble", pebble.directory_url, "ops@example.com", ca_bundle=pebble.tls_cert,
                        dns_provider=dns, secret_store=store, key_type=KeyType.RSA_2048)
    request = CertRequest("sim", CertName.API, (ZONE,), KeyType.RSA_2048)
    caplog.set_level(logging.INFO, logger="rotation.adapters.issuers.acme.account")

    first = issuer.issue(request)
    second = issuer.issue(request)
    assert first.key_pem.reveal() != second.key_pem.reveal()  # a fresh key every time
    messages_seen = [r.getMessage() for r in caplog.records]
    assert sum("registered at" in m for m in messages_seen) == 1, messages_seen
    assert sum("reused" in m for m in messages_seen) == 1
    blobs = list((tmp_path / "accounts" / "secrets").glob("*.enc"))
    assert len(blobs) == 1 and b"BEGIN" not in blobs[0].read_bytes() and b'"kty"' not in blobs[0].read_bytes()

    spec = issuer.account
    with issuer._network(None) as net:  # the test deactivates the account with the acme client itself
        acme = open_account(spec, issuer._directory(net), store, lambda k, r: issuer._adopt(net, k, r))
        old_uri = acme.net.account.uri
        acme.deactivate_registration(acme.net.account)
    caplog.clear()
    issuer.issue(request)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(old_uri in m and "registering a new account" in m for m in warnings), warnings
    stored = (store.get(spec.store_key) or b"{}").decode()
    assert json.loads(stored)["regr"] and old_uri not in stored


# --- failures: clear failed rotations, cluster unchanged, TXT cleaned up ------------------------


def test_dns_server_refuses_the_update_bad_tsig(
    tmp_path: Path, simulator: ClusterSimulator, ca_files: tuple[Path, Path], state_dir: Path,
    named: NamedServer, pebble: PebbleServer,  # noqa: F811
) -> None:
    wrong = base64.b64encode(secrets.token_bytes(32)).decode()
    inventory = acme_inventory(tmp_path, simulator, ca_files, named, pebble, tsig_secret=wrong)
    before = simulator.cluster_cert_pem("proxy")
    record = rotate(inventory, "proxy")
    assert record.outcome is Outcome.REFUSED
    assert "TSIG" in (record.error or "") and "refused" in (record.error or "")
    assert [s.name for s in record.steps] == ["read", "issue"]
    assert simulator.cluster_cert_pem("proxy") == before
    assert named.txt() == set()


class WrongValueDNS(RFC2136Provider):
    """Publishes a value the CA will not accept (the rest is the real provider)."""

    def present(self, fqdn_record: str, value: str) -> None:
        super().present(fqdn_record, "wrong-" + value[:20])

    def cleanup(self, fqdn_record: str, value: str) -> None:
        super().cleanup(fqdn_record, "wrong-" + value[:20])

    def wait_visible(self, fqdn_record: str, value: str, timeout: float) -> None:
        super().wait_visible(fqdn_record, "wrong-" + value[:20], timeout)


def test_pebble_refuses_the_challenge(
    tmp_path: Path, simulator: ClusterSimulator, ca_files: tuple[Path, Path], state_dir: Path,
    named: NamedServer, pebble: PebbleServer,  # noqa: F811
) -> None:
    inventory = acme_inventory(tmp_path, simulator, ca_files, named, pebble)
    dns = WrongValueDNS(server=named.address, tsig_key_name=TSIG_NAME, tsig_secret=named.tsig_secret,
                        propagation_servers=[named.address], poll_interval=0.1)
    issuer = AcmeIssuer("pebble", pebble.directory_url, "ops@example.com", ca_bundle=pebble.tls_cert,
                        trust_roots=pebble.root_file, dns_provider=dns)
    before = simulator.cluster_cert_pem("proxy")
    record = rotate(inventory, "proxy", issuer=issuer)
    assert record.outcome is Outcome.REFUSED
    assert record.problem is not None and record.problem["type"].endswith(":unauthorized"), record.problem
    assert "challenge validation failed" in (record.error or "")
    assert "unauthorized" in (record.error or "")
    assert simulator.cluster_cert_pem("proxy") == before
    assert named.txt() == set()
    assert RotationRecord.from_dict(record.to_dict()).problem == record.problem


def test_unreachable_directory_is_a_retryable_failed_rotation(
    tmp_path: Path, simulator: ClusterSimulator, ca_files: tuple[Path, Path], state_dir: Path,
    named: NamedServer, pebble: PebbleServer,  # noqa: F811
) -> None:
    inventory = acme_inventory(tmp_path, simulator, ca_files, named, pebble,
                               directory=f"https://127.0.0.1:{free_port()}/dir")
    before = simulator.cluster_cert_pem("api")
    record = rotate(inventory, "api")
    assert record.outcome is Outcome.REFUSED
    assert "directory unreachable" in (record.error or "")
    assert record.retryable is True
    assert simulator.cluster_cert_pem("api") == before
    assert named.txt() == set()


# --- rate limits and ARI: a tiny ACME server over real HTTP ----------------------------------


def test_rate_limited_answer_becomes_retry_after_over_real_http(tmp_path: Path, fake_ca: FakeCA) -> None:
    store = LocalSecretStore(tmp_path, SecretBox([SecretBox.generate_key().encode()]))
    issuer = AcmeIssuer("ca", f"{fake_ca.url}/dir", "ops@example.com", challenge="http-01", secret_store=store)
    with pytest.raises(IssuerError) as caught:
        issuer.issue(CertRequest("sim", CertName.API, (ZONE,)))
    error = caught.value
    assert error.retryable and error.retry_after == 90
    assert error.problem == {"type": "urn:ietf:params:acme:error:rateLimited",
                             "detail": "too many new accounts from this address"}
    assert "rateLimited: too many new accounts" in error.message and "retry after 90s" in error.message


@pytest.mark.parametrize("header", ["9" * 400, "9" * 30], ids=["overflows-a-float", "centuries"])
def test_a_retry_after_of_centuries_is_bounded_and_still_an_issuer_error(tmp_path: Path, fake_ca: FakeCA,
                                                                        header: str) -> None:
    fake_ca.retry_after = header
    store = LocalSecretStore(tmp_path, SecretBox([SecretBox.generate_key().encode()]))
    issuer = AcmeIssuer("ca", f"{fake_ca.url}/dir", "ops@example.com", challenge="http-01", secret_store=store)
    with pytest.raises(IssuerError) as caught:
        issuer.issue(CertRequest("sim", CertName.API, (ZONE,)))
    wait = caught.value.retry_after
    assert caught.value.retryable and wait == MAX_RETRY_AFTER
    # the task layer's countdown and the certificate's backoff can still be computed from it
    assert datetime.now(UTC) + timedelta(seconds=rotation_countdown(0, wait)) > datetime.now(UTC)
    assert datetime.now(UTC) + backoff_delay(1, timedelta(minutes=5), timedelta(hours=6), wait) > datetime.now(UTC)


def test_rate_limit_is_recorded_on_the_failed_rotation(
    tmp_path: Path, simulator: ClusterSimulator, ca_files: tuple[Path, Path], state_dir: Path, fake_ca: FakeCA,
) -> None:
    inventory = load_inventory(write_inventory(tmp_path / "inv.yaml", simulator, ca_files,
                                               cluster_overrides={"certificates": {"api": {"hosts": [ZONE]}}}))
    before = simulator.cluster_cert_pem("api")
    record = rotate(inventory, "api", issuer=AcmeIssuer("ca", f"{fake_ca.url}/dir", challenge="http-01"))
    assert record.outcome is Outcome.REFUSED
    assert record.retryable is True and record.retry_after == 90, record.error
    assert record.problem and record.problem["type"].endswith(":rateLimited")
    assert simulator.cluster_cert_pem("api") == before


@pytest.mark.parametrize(("code", "header", "retryable", "wait"), [
    ("rateLimited", "120", True, 120.0),
    ("rateLimited", None, True, 3600.0),
    ("rateLimited", "Wed, 21 Oct 2099 07:28:00 GMT", True, None),
    ("serverInternal", None, True, None),
    ("caa", None, False, None),
    ("rejectedIdentifier", None, False, None),
    ("unauthorized", None, False, None),
])
def test_problem_mapping(code: str, header: str | None, retryable: bool, wait: float | None) -> None:
    problem = messages.Error.with_code(code, detail=f"{code} detail")
    error = translate_error(problem, context="ACME x", retry_after_header=header)
    assert error.retryable is retryable
    assert error.problem == {"type": f"urn:ietf:params:acme:error:{code}", "detail": f"{code} detail"}
    assert f"{code}: {code} detail" in error.message
    if wait is not None:
        assert error.retry_after == wait
    elif header:
        assert error.retry_after and error.retry_after > 86400 * 365  # an HTTP-date far away
    else:
        assert error.retry_after is None


def test_ari_window_decides_renewal_and_absent_ari_is_none(
    tmp_path: Path, fake_ca: FakeCA, ca_files: tuple[Path, Path], pebble: PebbleServer,  # noqa: F811
) -> None:
    leaf = InternalCA("ca", *ca_files).issue(CertRequest("sim", CertName.API, (ZONE,))).leaf_pem
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    end = start + timedelta(hours=2)
    fake_ca.windows["current"] = {"start": start.isoformat().replace("+00:00", "Z"),
                                  "end": end.isoformat().replace("+00:00", "Z")}
    issuer = AcmeIssuer("ca", f"{fake_ca.url}/dir", challenge="http-01")
    info = issuer.renewal_info(leaf)
    assert info is not None and info.ask_again_in > timedelta(hours=5)  # the CA's Retry-After: 6 h
    due = info.due_at
    assert due is not None and due.tzinfo is not None and due.utcoffset() == timedelta(0)
    assert start <= due <= end

    fake_ca.with_ari = False
    assert (absent := issuer.renewal_info(leaf)) is not None and absent.due_at is None
    # Pebble 2.4.0 offers no renewalInfo either: the configured renew_before applies.
    from_pebble = AcmeIssuer("p", pebble.directory_url, challenge="http-01",
                             ca_bundle=pebble.tls_cert).renewal_info(leaf)
    assert from_pebble is not None and from_pebble.due_at is None


@pytest.mark.parametrize("length", [timedelta(0), -timedelta(days=5)], ids=["zero-length", "end-before-start"])
def test_a_malformed_renewal_window_is_ignored(fake_ca: FakeCA, ca_files: tuple[Path, Path],
                                               length: timedelta) -> None:
    """RFC 9773 4.2: a window whose end is not after its start is malformed; the client makes its own
    determination (renew_before). A moment was drawn between the two ends and followed as the CA's."""
    leaf = InternalCA("ca", *ca_files).issue(CertRequest("sim", CertName.API, (ZONE,))).leaf_pem
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    fake_ca.windows["current"] = {"start": start.isoformat().replace("+00:00", "Z"),
                                  "end": (start + length).isoformat().replace("+00:00", "Z")}
    info = AcmeIssuer("ca", f"{fake_ca.url}/dir", challenge="http-01").renewal_info(leaf)
    assert info is not None and info.due_at is None, info
    assert info.ask_again_in > timedelta(hours=5)  # the CA's Retry-After still holds


@pytest.mark.parametrize(("header", "reuse"), [("21600", timedelta(hours=6)), ("5", timedelta(minutes=5)),
                                               ("864000", timedelta(hours=24))],
                         ids=["as-the-ca-says", "at-least-minutes", "at-most-a-day"])
def test_scans_reuse_renewal_info_until_retry_after(
    tmp_path: Path, ca_files: tuple[Path, Path], fake_ca: FakeCA, service_env: dict[str, str],
    header: str, reuse: timedelta,
) -> None:
    """RFC 9773: a client does not ask again before Retry-After. The window the CA gave is kept per
    certificate in the service state (Redis) and reused by every scan until then (bounded: at least minutes,
    at most a day), so a fleet scanning every few minutes does not hammer the CA."""
    simulator = start_simulator(tmp_path / "long", expires_in=timedelta(days=200))  # not due by renew_before
    path = write_inventory(tmp_path / "ari.yaml", simulator, ca_files)
    data = yaml.safe_load(path.read_text())
    data["issuers"]["ca"] = {"type": "acme", "directory": f"{fake_ca.url}/dir", "challenge": "http-01"}
    data["clusters"]["sim"].update(issuer="ca", certificates={"api": {"hosts": [ZONE]}})
    path.write_text(yaml.safe_dump(data))
    inventory = load_inventory(path)
    fake_ca.ari_retry_after = header
    now = datetime.now(UTC).replace(microsecond=0)
    start = now + timedelta(days=5)
    fake_ca.windows["current"] = {"start": start.isoformat().replace("+00:00", "Z"),
                                  "end": (start + timedelta(hours=1)).isoformat().replace("+00:00", "Z")}
    clock = FakeClock(now)
    with simulator_stopped(simulator), ServiceContext(inventory=lambda: inventory, clock=clock) as ctx:
        assert not scan_cluster(ctx, "sim").decisions[CertName.API].due
        assert fake_ca.ari_requests == 1
        clock.advance(reuse.total_seconds() - 60)
        assert not scan_cluster(ctx, "sim").decisions[CertName.API].due
        assert fake_ca.ari_requests == 1  # before Retry-After: what the CA said is reused
        fake_ca.windows["current"] = {"start": now.isoformat().replace("+00:00", "Z"),
                                      "end": (now + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")}
        clock.advance(120)
        moved = scan_cluster(ctx, "sim")
        assert fake_ca.ari_requests == 2  # after it: asked again, and the new window decides
        assert moved.decisions[CertName.API].due and "(ARI)" in moved.decisions[CertName.API].reason
        # `status` says why the scan rotates it (its verdict alone says "ok, expires in 200d")
        assert any(r["cert"] == "api" and "(ARI)" in r["reason"] for r in service_status(ctx)["certificates"])
        fake_ca.ari_broken = True  # failing: not asked again before the next check either, the last window holds
        clock.advance(ARI_RECHECK_MAX.total_seconds())
        assert scan_cluster(ctx, "sim").decisions[CertName.API].due and fake_ca.ari_requests == 3
        clock.advance(ARI_RECHECK_MIN.total_seconds() - 1)
        assert scan_cluster(ctx, "sim").decisions[CertName.API].due and fake_ca.ari_requests == 3


@contextlib.contextmanager
def simulator_stopped(simulator: ClusterSimulator) -> Iterator[ClusterSimulator]:
    try:
        yield simulator
    finally:
        simulator.stop()


# --- the service end to end: beat scans, a worker renews from Pebble ---------------------------


@pytest.fixture
def inventory_path(tmp_path: Path, simulator: ClusterSimulator, ca_files: tuple[Path, Path],
                   named: NamedServer, pebble: PebbleServer) -> Path:  # noqa: F811
    """The service fixtures (tests/conftest.py) read this: the simulator renewed from Pebble."""
    inventory = acme_inventory(tmp_path, simulator, ca_files, named, pebble, certificates={"proxy": {}, "api": {}})
    assert inventory.source is not None
    return inventory.source


def test_service_renews_proxy_and_api_from_pebble_through_beat_and_a_worker(
    simulator: ClusterSimulator, service_env: dict[str, str], start_service,  # noqa: ANN001
    named: NamedServer, pebble: PebbleServer,  # noqa: F811
) -> None:
    from support.processes import wait_for

    from rotation.usecases.context import ServiceContext

    start_service("worker", "--concurrency", "2")
    start_service("beat")
    ctx = ServiceContext()

    def verified() -> dict[str, str]:
        return {r.cert_name: r.new_fingerprint or "" for r in ctx.state.history("sim", limit=50)
                if r.outcome is Outcome.VERIFIED}

    done = wait_for(lambda: (v := verified()) and set(v) == {"proxy", "api"} and v, 60, 0.5,
                    what="proxy and api renewed from Pebble by the service")
    for cert in (CertName.PROXY, CertName.API):
        assert served_by_all_nodes(simulator, cert, pebble.root_file) == {done[str(cert)]}
    history = ctx.state.history("sim", limit=50)
    assert all(r.trigger == "beat" and r.issuer == "pebble" for r in history if r.outcome is Outcome.VERIFIED)
    assert named.txt() == set()
