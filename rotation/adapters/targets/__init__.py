"""Rotation targets: a cluster slot, a database's own certificate, the tool's own client certificate
(``base`` says what each must do; ``open_target`` picks one by name).

The targets that are not cluster slots are imported where one is named: a slot's rotation (the common
case, and ``rotate --inline``'s start-up) does not load database, LDAP or client-certificate code."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rotation.adapters.cluster import ClusterSession
from rotation.adapters.secrets import SecretStore
from rotation.adapters.targets.base import OriginalPair, Target
from rotation.adapters.targets.slot import ClusterSlot
from rotation.adapters.tls.probe import probe_endpoints
from rotation.core.errors import ConfigError, RotationError
from rotation.core.model import CertName, Endpoint, ServedCert
from rotation.core.targets import LDAP_CLIENT, REST_CLIENT, database_key


@dataclass
class TargetReads:
    """What a scan or `check` must read of some targets: the endpoints to handshake, and what is known
    without a handshake (syncer from the view, ``rest_client`` from its file, an unreadable database)."""

    names: list[CertName | str]
    endpoints: dict[CertName | str, list[Endpoint]] = field(default_factory=dict)
    known: dict[CertName | str, list[ServedCert]] = field(default_factory=dict)

    @property
    def flat(self) -> list[Endpoint]:
        return [endpoint for endpoints in self.endpoints.values() for endpoint in endpoints]

    def merge(self, results: Sequence[ServedCert]) -> dict[CertName | str, list[ServedCert]]:
        """``results`` of the handshakes of :attr:`flat` (same order), with the known ones, per target."""
        served = {**self.known, **{name: [] for name in self.endpoints}}
        for endpoint, result in zip(self.flat, results, strict=True):
            served[endpoint.cert_name].append(result)
        return {name: served[name] for name in self.names}


def plan_reads(session: ClusterSession, names: Sequence[CertName | str]) -> TargetReads:
    """Sort ``names`` into endpoints to handshake and what the view or a file already says (no handshake)."""
    view = session.view()
    reads = TargetReads(list(names))
    for name in names:
        if isinstance(name, CertName) and name.is_served:
            reads.endpoints[name] = view.endpoints(name)
        elif isinstance(name, CertName):
            reads.known[name] = [session.rest_copy(name, from_view=True)]  # syncer: no private keys fetched
        elif name == LDAP_CLIENT:
            from rotation.adapters.targets.ldap_client import ldap_client_copy

            reads.known[name] = [ldap_client_copy(session)]
        elif name == REST_CLIENT:
            from rotation.adapters.targets.rest_client import file_copy

            try:
                in_use = session.settings.client_certificate(session.name)
                reads.known[name] = [file_copy(session, in_use)] if in_use else []
            except RotationError as exc:
                reads.known[name] = [ServedCert(Endpoint(session.name, name, "file", "client_cert_file", 0),
                                                error=exc.message)]
        elif database_key(name) is not None:
            from rotation.adapters.targets.database import DatabaseTarget

            try:
                reads.endpoints[name] = DatabaseTarget(session, name, None).endpoints()
            except RotationError as exc:  # gone, or TLS off: one unreadable row says why
                reads.known[name] = [ServedCert(Endpoint(session.name, name, "-", "GET /v1/bdbs", 0),
                                                error=exc.message)]
        else:
            raise ConfigError(f"{session.name}: {name!r} is not a certificate this version can read")
    return reads


def read_targets(session: ClusterSession, names: Sequence[CertName | str]) -> dict[CertName | str, list[ServedCert]]:
    """What each target presents now, for a scan or `check`: every endpoint of every target in one
    probe batch (under the cluster's cap), the rest from what the view already read."""
    reads = plan_reads(session, names)
    return reads.merge(probe_endpoints(reads.flat, concurrency=session.settings.concurrency,
                                       timeout=session.settings.handshake_timeout.total_seconds()))


def open_target(session: ClusterSession, cert_name: CertName | str, secrets: SecretStore | None = None) -> Target:
    """The target named ``cert_name`` (as ``Inventory.plan`` resolved it) on this cluster. No I/O."""
    if isinstance(cert_name, CertName):
        return ClusterSlot(session, cert_name)
    if database_key(cert_name) is not None:
        from rotation.adapters.targets.database import DatabaseTarget

        return DatabaseTarget(session, cert_name, secrets)
    if cert_name == REST_CLIENT:
        from rotation.adapters.targets.rest_client import RestClientTarget

        return RestClientTarget(session)
    if cert_name == LDAP_CLIENT:
        from rotation.adapters.targets.ldap_client import LdapClientTarget

        return LdapClientTarget(session)
    raise ConfigError(f"{session.name}: {cert_name!r} is not a certificate this version can rotate")


__all__ = ["OriginalPair", "Target", "TargetReads", "open_target", "plan_reads", "read_targets"]
