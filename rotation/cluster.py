"""A connected cluster: REST client + its current shape + what its endpoints serve."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from rotation import certs
from rotation.config import ClusterSettings, Inventory
from rotation.issuers import Issuer, issuer_factory
from rotation.model import CertName, Endpoint, KeyType, ServedCert
from rotation.probe import probe_endpoints
from rotation.rs.client import BULK_UPDATE_SINCE, RSClient, parse_version
from rotation.secrets import SecretStore
from rotation.topology import ClusterView

log = logging.getLogger(__name__)


def build_issuer(inventory: Inventory, name: str, *, secret_store: SecretStore | None = None) -> Issuer:
    """The issuer named in the inventory; stateful issuers (ACME accounts) get the secret store."""
    settings = inventory.issuers[name]
    factory = issuer_factory(settings.type)
    kwargs = settings.factory_kwargs(f"issuers.{name}")
    if secret_store is not None and "secret_store" in inspect.signature(factory).parameters:
        kwargs["secret_store"] = secret_store
    return factory(name=name, **kwargs)


def default_key_type(inventory: Inventory, issuer_name: str | None) -> KeyType:
    settings = inventory.issuers.get(issuer_name or "")
    return getattr(settings, "key_type", None) or KeyType.ECDSA_P256


@dataclass
class ClusterSession:
    """Everything one command needs about one cluster, read once and reused."""

    name: str
    settings: ClusterSettings
    client: RSClient
    _view: ClusterView | None = field(default=None, repr=False)

    def view(self, refresh: bool = False) -> ClusterView:
        if self._view is None or refresh:
            nodes = self.client.nodes()
            self._view = ClusterView.from_api(
                self.name,
                self.settings,
                self.client.cluster_info(),
                nodes,
                self.client.databases(),
                self.client.software_version(nodes),
            )
        return self._view

    @property
    def uses_bulk_update(self) -> bool:
        version = parse_version(self.view().version)
        return bool(version) and version >= BULK_UPDATE_SINCE

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

    def rest_copy(self, cert_name: CertName, *, from_view: bool = False) -> ServedCert:
        """The cluster's own copy of a certificate. ``from_view`` uses the PEM that ``GET /v1/cluster``
        already returned (syncer): one request less, and no private keys fetched by a scan."""
        if from_view and cert_name is CertName.SYNCER and self.view().syncer_pem:
            source, pem = "GET /v1/cluster", self.view().syncer_pem
        else:
            pair = self.client.certificates().get(str(cert_name))
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

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> ClusterSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def api_trust(inventory: Inventory, cluster_name: str) -> list[str]:
    """CA PEMs the REST client must also trust: the issuer of this cluster's ``api`` certificate,
    so the client keeps working after ``api`` is rotated."""
    cluster = inventory.clusters[cluster_name]
    if CertName.API not in cluster.certificates:
        return []
    issuer_name = inventory.plan(cluster_name, CertName.API).issuer
    if not issuer_name:
        return []
    try:
        return build_issuer(inventory, issuer_name).trust_anchors()
    except Exception as exc:  # an unusable issuer must not stop read-only commands
        log.debug("no extra trust from issuer %s: %s", issuer_name, exc)
        return []


def open_cluster(inventory: Inventory, name: str, *, extra_trust: Sequence[str] = ()) -> ClusterSession:
    settings = inventory.cluster(name)
    client = RSClient(
        settings.url,
        settings.username,
        settings.password(name),
        cluster=name,
        verify=settings.verify if isinstance(settings.verify, bool) else settings.verify_paths,
        server_name=settings.tls_server_name,
        timeout=settings.request_timeout.total_seconds(),
        extra_trust=[*api_trust(inventory, name), *extra_trust],
    )
    return ClusterSession(name=name, settings=settings, client=client)
