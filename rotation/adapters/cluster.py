"""A connected cluster: REST client + its current shape + what its endpoints serve."""

from __future__ import annotations

import hashlib
import logging
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rotation.adapters.rs.client import CertificatePair, RSClient, database_infos, documented_shape
from rotation.adapters.rs.tls_context import build_ssl_context
from rotation.adapters.tls.probe import probe_endpoints
from rotation.config import ClusterSettings, Inventory
from rotation.core import certs
from rotation.core.model import CertName, ClientCertificate, Endpoint, SecretPEM, ServedCert
from rotation.core.topology import ClusterView, NodeInfo
from rotation.core.versions import DATABASE_CERTIFICATES_SINCE, at_least, uses_bulk_update

if TYPE_CHECKING:  # imported where read: a slot's rotation reads neither links nor OCSP
    from rotation.core.coupling_data import ClusterLinks
    from rotation.core.ocsp import OcspConfig, OcspStatus

log = logging.getLogger(__name__)


@dataclass
class ClusterSession:
    """Everything one command needs about one cluster, read once and reused."""

    name: str
    settings: ClusterSettings
    client: RSClient
    _view: ClusterView | None = field(default=None, repr=False)
    #: where the client goes at the end (a pool), told whether the session ended cleanly
    release: Callable[[RSClient, bool], None] | None = field(default=None, repr=False)
    #: CA PEMs a REST client of this cluster trusts besides ``verify`` (what a new process would trust)
    trust: tuple[str, ...] = ()

    def view(self, refresh: bool = False, *, info: dict[str, Any] | None = None) -> ClusterView:
        """The cluster's view, read once (``refresh``: again; ``info``: with this ``GET /v1/cluster`` answer)."""
        if self._view is None or refresh:
            self.read_shape(info=info)
        assert self._view is not None  # read_shape sets it
        return self._view

    @property
    def view_read(self) -> bool:
        """This session has read the cluster's view (its opener knows how long ago: a session is short-lived)."""
        return self._view is not None

    def software_version(self) -> str | None:
        """The cluster's version: the view's when read, else ``GET /v1/nodes`` alone (not the whole view)."""
        return self._view.version if self._view is not None else self.client.software_version()

    def read_shape(self, *, links: bool = False, own_listed: list[dict[str, Any]] | None = None,
                   every_crdb: bool = False, info: dict[str, Any] | None = None) -> ClusterLinks | None:
        """The view and (``links``) the replication links from ONE read of each answer: ``GET /v1/cluster``,
        ``/v1/nodes``, ``/v1/bdbs`` (raw, parsed for both), ``/v1/bdbs/certificates`` where the version has
        it (its items appended to ``own_listed``), and ``/v1/crdbs`` only where a database has a
        ``crdt_guid`` (a fleet check reads each cluster once). Which databases present a certificate of
        their own tells where ``proxy`` is looked for (only clusters with per-database certificates answer).
        ``every_crdb``: ``/v1/crdbs`` is read whatever the databases say, as :meth:`replication` does.
        ``info``: the ``GET /v1/cluster`` answer the caller read moments before (not read again)."""
        info = info if info is not None else self.client.cluster_info()
        nodes = self.client.nodes()
        version = self.client.software_version(nodes)
        listed = self.client.database_certificates() if at_least(version, DATABASE_CERTIFICATES_SINCE) else []
        if own_listed is not None:
            own_listed.extend(listed)
        bdbs = self.client.bdb_objects()
        with documented_shape(self.name, "reading the cluster's shape", self.client.base_url):
            own = [int(item["bdb_uid"]) for item in listed if "bdb_uid" in item]
            self._view = ClusterView.from_api(self.name, info, nodes, database_infos(bdbs), version,
                                              self.settings.layout, own)
        return self._links(info, nodes, bdbs, every_crdb) if links else None

    def links_only(self) -> ClusterLinks:
        """The replication links alone, ``/v1/crdbs`` read only where a database has a ``crdt_guid``."""
        return self._links(self.client.cluster_info(), self.client.nodes(), self.client.bdb_objects())

    def _links(self, info: dict[str, Any], nodes: Sequence[NodeInfo], bdbs: list[dict[str, Any]],
               every_crdb: bool = False) -> ClusterLinks:
        addresses = [address for node in nodes for address in (node.addr, *node.external_addr)]
        from rotation.core.coupling_data import parse_cluster

        crdbs = self.client.crdbs() if every_crdb or any(bdb.get("crdt_guid") for bdb in bdbs) else []
        return parse_cluster(self.name, self.settings.fqdn, self.settings.url, info, addresses, bdbs, crdbs)

    @property
    def uses_bulk_update(self) -> bool:
        return uses_bulk_update(self.view().version)

    def certificates(self) -> dict[str, CertificatePair]:
        """Every certificate (and key) the cluster holds: ``GET /v1/cluster/certificates``."""
        return self.client.certificates()

    def push(self, cert_name: CertName, certificate: str, key: SecretPEM) -> str:
        """Install a certificate and key, the way this cluster's version takes it (bulk from 7.22.2);
        returns which call it was."""
        return self.client.update_certificate(str(cert_name), certificate, key, bulk=self.uses_bulk_update)

    def push_trusted_ca(self, bundle: str) -> str:
        """Replace ``mtls_trusted_ca`` (the CAs certificate login trusts: certificates only, no key)."""
        return self.client.update_certificate("mtls_trusted_ca", bundle, None, bulk=self.uses_bulk_update)

    def update_cluster(self, settings: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """``PUT /v1/cluster`` (``?dry_run``: validated, nothing changed)."""
        return self.client.update_cluster(settings, dry_run=dry_run)

    def replication(self) -> ClusterLinks:
        """What this cluster says about its replication links and Active-Active databases (fresh reads:
        ``GET /v1/cluster``, ``/v1/nodes``, ``/v1/bdbs``, ``/v1/crdbs``)."""
        from rotation.core.coupling_data import parse_cluster

        info, nodes = self.client.cluster_info(), self.client.nodes()
        addresses = [address for node in nodes for address in (node.addr, *node.external_addr)]
        return parse_cluster(self.name, self.settings.fqdn, self.settings.url, info, addresses,
                             self.client.bdb_objects(), self.client.crdbs())

    def database(self, uid: int) -> dict[str, Any]:
        """``GET /v1/bdbs/{uid}``: one database object, its link status read now."""
        return self.client.bdb(uid)

    def update_database(self, uid: int, fields: dict[str, Any]) -> dict[str, Any]:
        return self.client.update_bdb(uid, fields)

    def force_update_crdb(self, guid: str) -> dict[str, Any]:
        """``POST /v1/crdbs/{guid}/updates {"force_update": true}``: the CRDB task (the docs call it dangerous;
        callers log it)."""
        return self.client.update_crdb(guid, {"force_update": True})

    def crdb_task(self, task_id: str) -> dict[str, Any]:
        return self.client.crdb_task(task_id)

    def ocsp(self) -> OcspConfig:
        """``GET /v1/ocsp``: whether the proxy certificate is stapled (RS 6.2.12+)."""
        from rotation.core.ocsp import OcspConfig

        return OcspConfig.from_api(self.client.ocsp_config())

    def set_ocsp_stapling(self, on: bool) -> OcspConfig:
        """``PUT /v1/ocsp {"ocsp_functionality": on}`` (RS refuses "on" for a proxy certificate without OCSP URL)."""
        from rotation.core.ocsp import OcspConfig

        return OcspConfig.from_api(self.client.update_ocsp({"ocsp_functionality": on}))

    def ocsp_status(self, *, query_now: bool = False) -> OcspStatus:
        """The responder's answer about the proxy certificate: RS's cached one, or (``query_now``) one RS
        asks for now (``POST /v1/ocsp/test``)."""
        from rotation.core.ocsp import OcspStatus

        return OcspStatus.from_api(self.client.test_ocsp() if query_now else self.client.ocsp_status())

    def trust_more(self, ca_pems: Sequence[str]) -> None:
        """From now on the REST client also trusts these CAs (before the ``api`` certificate changes)."""
        self.client.trust(ca_pems)

    def endpoints(self, cert_name: CertName) -> list[Endpoint]:
        return self.view().endpoints(cert_name)

    def served(self, cert_name: CertName) -> list[ServedCert]:
        """Fresh handshakes on every endpoint; for ``syncer`` the REST API's copy."""
        if not cert_name.is_served:
            return [self.rest_copy(cert_name)]
        return probe_endpoints(
            self.endpoints(cert_name),
            concurrency=self.settings.concurrency,
            timeout=self.settings.handshake_timeout.total_seconds(),
        )

    def rest_copy(self, cert_name: CertName, *, from_view: bool = False, client: RSClient | None = None
                  ) -> ServedCert:
        """The cluster's own copy of a certificate. ``from_view`` uses the PEM that ``GET /v1/cluster``
        already returned (syncer): one request less, and no private keys fetched by a scan. ``client``
        reads it through another client (a fresh one: see :meth:`fresh_client`)."""
        if from_view and cert_name is CertName.SYNCER and self.view().syncer_pem:
            source, pem = "GET /v1/cluster", self.view().syncer_pem
        else:
            pair = (client or self.client).certificates().get(str(cert_name))
            source, pem = "GET /v1/cluster/certificates", pair.certificate if pair else None
        endpoint = Endpoint(self.name, cert_name, "api", source, 0)
        if pem is None:
            return ServedCert(endpoint=endpoint, error=f"not present in {source}")
        leaf = certs.load_certificates(pem, where=f"{self.name} {cert_name}_cert")[0]
        return ServedCert(
            endpoint=endpoint,
            fingerprint=certs.fingerprint(leaf),
            subject=certs.subject_text(leaf),
            sans=certs.subject_alt_names(leaf),
            not_after=certs.not_after(leaf),
            not_before=certs.not_before(leaf),
        )

    def rest_context(self) -> ssl.SSLContext:
        """The TLS context a REST client of this cluster gets in a new process (``verify`` + ``trust``)."""
        return build_ssl_context(verify_of(self.settings), self.trust)

    def fresh_client(self) -> RSClient:
        """A new REST client with only the trust a new process would have: its first request makes a
        fresh TLS handshake, which proves the REST API's certificate is trusted *after* a rotation."""
        return _client(self.name, self.settings, self.trust)

    def close(self, *, clean: bool = True) -> None:
        if self.release is not None:
            self.release(self.client, clean)
        else:
            self.client.close()

    def __enter__(self) -> ClusterSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        self.close(clean=exc_type is None)


def verify_of(settings: ClusterSettings) -> bool | tuple[Path, ...]:
    """What the REST client verifies the API with: system trust, nothing (``verify: false``) or bundles."""
    return settings.verify if isinstance(settings.verify, bool) else settings.verify_paths


def _client(name: str, settings: ClusterSettings, trust: Sequence[str],
            client_cert: ClientCertificate | None = None, trust_problem: str | None = None) -> RSClient:
    username, password = settings.basic_credentials(name) or (None, None)
    return RSClient(
        settings.url,
        username,
        password,
        client_cert=client_cert or settings.client_certificate(name),
        cluster=name,
        verify=verify_of(settings),
        server_name=settings.tls_server_name,
        timeout=settings.request_timeout.total_seconds(),
        extra_trust=trust,
        trust_problem=trust_problem,
    )


def open_cluster(inventory: Inventory, name: str, *, extra_trust: Sequence[str] = ()) -> ClusterSession:
    settings = inventory.cluster(name)
    anchors, problem = inventory.api_trust_and_problem(name)
    trust = (*anchors, *extra_trust)
    return ClusterSession(name=name, settings=settings, client=_client(name, settings, trust, trust_problem=problem),
                          trust=trust)


class SessionPool:
    """REST clients kept between the sessions of one process (a worker's scans and rotations, a CLI
    rotating several certificates).

    The next session of a cluster reuses a client instead of building one (proxy settings, TLS
    context), and its keep-alive connection while the API keeps it open, so back-to-back work
    skips a TLS handshake and a round trip. One session holds a client at a time; a session that
    ended with an error closes its client; an edited inventory entry (settings, password, or the
    trust anchors of its ``api`` issuer) gets new clients and the old ones are closed.
    """

    def __init__(self, idle_per_cluster: int = 4) -> None:
        self._idle: dict[str, tuple[str, list[RSClient]]] = {}  # cluster -> (identity, idle clients)
        self._lock = threading.Lock()
        self._idle_per_cluster = idle_per_cluster

    def open(self, inventory: Inventory, name: str) -> ClusterSession:
        settings = inventory.cluster(name)
        anchors, trust_problem = inventory.api_trust_and_problem(name)
        trust = tuple(anchors)
        basic = settings.basic_credentials(name)
        client_cert = settings.client_certificate(name)  # a renewed one gets new clients
        identity = hashlib.sha256("\0".join((
            settings.model_dump_json(), basic[1] if basic else "", *trust,
            *((client_cert.certificate, client_cert.key.reveal()) if client_cert else ()),
        )).encode()).hexdigest()
        stale: list[RSClient] = []
        client = None
        with self._lock:
            known, idle = self._idle.get(name, (identity, []))
            if known != identity:
                stale, idle = idle, []
            if idle:
                client = idle.pop()
            self._idle[name] = (identity, idle)
        for old in stale:
            old.close()
        return ClusterSession(name, settings, client or _client(name, settings, trust, client_cert, trust_problem),
                              trust=trust,
                              release=lambda used, clean: self._release(name, identity, used, clean))

    def _release(self, name: str, identity: str, client: RSClient, clean: bool) -> None:
        with self._lock:
            known, idle = self._idle.get(name, (None, []))
            if clean and known == identity and len(idle) < self._idle_per_cluster:
                idle.append(client)
                return
        client.close()

    def close(self) -> None:
        with self._lock:
            pools, self._idle = list(self._idle.values()), {}
        for _, idle in pools:
            for client in idle:
                client.close()
