"""What renewing one certificate takes (``CertPlan``), for the targets beside a cluster's slots: the
tool's own client certificate (``rest_client``) and a database's own certificate (``db:<key>``).

``Inventory.plan`` resolves the slots itself and asks :func:`other_plan` for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from rotation.core.durations import RenewBefore, format_duration
from rotation.core.errors import ConfigError
from rotation.core.model import CertName, CertRequest, KeyType
from rotation.core.slot_rules import PROFILE_NAMES, Role, role_of
from rotation.core.targets import DATABASE_PREFIX, LDAP_CLIENT, REST_CLIENT, database_key

if TYPE_CHECKING:
    from rotation.config.clusters import CertificateSettings, ClusterSettings
    from rotation.config.issuers import IssuerSettings
    from rotation.config.login import RestClientSettings


class Inventory(Protocol):
    """What planning reads of ``rotation.config.inventory.Inventory`` (which calls into this module, so
    it is described here rather than imported)."""

    renew_before: RenewBefore
    issuers: dict[str, IssuerSettings]
    clusters: dict[str, ClusterSettings]

    def cluster(self, name: str) -> ClusterSettings: ...
    def targets(self, cluster_name: str) -> list[CertName | str]: ...
    def plan(self, cluster_name: str, cert_name: str | CertName) -> CertPlan: ...


@dataclass(frozen=True)
class CertPlan:
    cluster: str
    cert_name: CertName | str  # a slot (CertName), "rest_client" or "db:<key>" (rotation.core.targets)
    issuer: str | None
    key_type: KeyType | None
    renew_before: RenewBefore
    hosts: tuple[str, ...]
    subject: str | None = None  # rest_client: its certificate_subject_line

    def request(self) -> CertRequest:
        return CertRequest(
            cluster=self.cluster,
            cert_name=self.cert_name,
            hosts=self.hosts,
            key_type=self.key_type or KeyType.ECDSA_P256,
            subject=self.subject,
            client=self.cert_name in (REST_CLIENT, LDAP_CLIENT),
        )


def _default_issuer(inventory: Inventory, cluster: ClusterSettings, own: str | None) -> str | None:
    return own or cluster.issuer or (next(iter(inventory.issuers)) if len(inventory.issuers) == 1 else None)


def _key_type(inventory: Inventory, own: KeyType | None, cluster: ClusterSettings, issuer: str | None
              ) -> KeyType | None:
    return own or cluster.key_type or (inventory.issuers[issuer].key_type if issuer else None)


def rest_client_issuer_problem(inventory: Inventory, cluster: ClusterSettings) -> str | None:
    """Why ``rest_client`` cannot be issued by its issuer (None when it can, or is not managed)."""
    if cluster.rest_client is None:
        return None
    issuer = _default_issuer(inventory, cluster, cluster.rest_client.issuer)
    if issuer is None:
        return "no issuer: name the internal CA whose certificate the cluster's mtls_trusted_ca holds"
    settings = inventory.issuers.get(issuer)
    if settings is not None and settings.type == "acme":
        return (f"{issuer!r} is an ACME CA: public CAs issue no client certificates for RS login; "
                "use an internal_ca (or files) issuer")
    return None


def _issuer_where(cluster_name: str, cluster: ClusterSettings, name: str) -> str:
    """Where the issuer of target ``name`` is set in the inventory (its own field, else the cluster's)."""
    own: str | None = None
    if name in {str(c) for c in cluster.certificates}:
        own = cluster.certificates[CertName(name)].issuer
        part = f"certificates.{name}.issuer"
    elif name.startswith(DATABASE_PREFIX):
        own = cluster.databases[name[len(DATABASE_PREFIX):]].issuer
        part = f"databases.{name[len(DATABASE_PREFIX):]}.issuer"
    else:
        section = getattr(cluster, name, None)
        own = getattr(section, "issuer", None)
        part = f"{name}.issuer"
    return f"clusters.{cluster_name}.{part}" if own else f"clusters.{cluster_name}.issuer"


def impossible_plans(inventory: Inventory) -> list[str]:
    """Plans no order can fulfil, found before any order (at inventory load and by `rotation config check`):
    a client slot routed to an ACME CA that issues no clientAuth EKU (public CAs since 2026), a
    ``strict_profile`` cluster whose certificates come from such a CA, more names than the CA allows."""
    problems: list[str] = []
    for cluster_name, cluster in inventory.clusters.items():
        for name in inventory.targets(cluster_name):
            plan = inventory.plan(cluster_name, name)
            problem = _renewed_at_once(plan, inventory.issuers.get(plan.issuer or ""))
            if problem:
                problems.append(f"clusters.{cluster_name}: {problem}")
            if name == REST_CLIENT:
                continue  # rest_client_issuer_problem says it
            settings = inventory.issuers.get(plan.issuer or "")
            if settings is None or settings.type != "acme":
                continue
            where = _issuer_where(cluster_name, cluster, str(name))
            if not settings.issues_client_auth:
                if role_of(str(name)) is Role.CLIENT:
                    problems.append(
                        f"{where}: {cluster_name}/{name} is a client certificate (RS presents it as a TLS client, so "
                        f"it needs the clientAuth EKU), but issuer {plan.issuer!r} is an ACME CA that issues no "
                        f"clientAuth (public CAs stopped in 2026): give `{name}` an `internal_ca` issuer, or set "
                        f"issuers.{plan.issuer}.client_auth: true if it is a private ACME CA that still issues it")
                elif cluster.strict_profile and str(name) in PROFILE_NAMES:
                    problems.append(
                        f"{where}: clusters.{cluster_name}.strict_profile requires clientAuth on {name} too, but "
                        f"issuer {plan.issuer!r} is an ACME CA that issues no clientAuth: use an `internal_ca` "
                        "issuer, or turn strict_profile off (what a certificate misses is then a warning)")
            if len(plan.hosts) > settings.names_limit:
                problems.append(
                    f"{where}: {cluster_name}/{name} asks for {len(plan.hosts)} names, but issuer {plan.issuer!r} "
                    f"allows at most {settings.names_limit} per certificate (max_names"
                    + (f", profile {settings.profile}" if settings.profile else "") + "): name fewer hosts")
    return problems


def _renewed_at_once(plan: CertPlan, settings: IssuerSettings | None) -> str | None:
    """Why every certificate the plan gets would be due as soon as it is issued: an internal CA's
    ``validity``, or the lifetime of an ACME profile known to be short (``PROFILE_LIFETIMES``), not longer
    than an absolute ``renew_before`` (each scan would rotate it again)."""
    from rotation.config.issuers import PROFILE_LIFETIMES

    if settings is None or plan.renew_before.absolute is None:
        return None
    if settings.type == "internal_ca":
        lifetime, field = settings.validity, f"issuers.{plan.issuer}.validity is {format_duration(settings.validity)}"
    elif settings.type == "acme" and settings.profile in PROFILE_LIFETIMES:
        lifetime = PROFILE_LIFETIMES[settings.profile]
        field = (f"issuers.{plan.issuer}.profile {settings.profile} issues certificates of "
                 f"{format_duration(lifetime)}")
    else:
        return None
    if plan.renew_before.absolute < lifetime:
        return None
    return (f"{plan.cert_name} renews {plan.renew_before} before expiry (renew_before {plan.renew_before}), but "
            f"{field}: each certificate would be due "
            "as soon as issued and rotated again at every scan; shorten renew_before (or use a share, e.g. 33%)")


def _own_plan(inventory: Inventory, cluster_name: str, cluster: ClusterSettings, name: str,
              settings: RestClientSettings | CertificateSettings, *, hosts: tuple[str, ...],
              subject: str | None = None) -> CertPlan:
    """The plan of a certificate entry beside the slots: its own settings, else the cluster's, else the top level."""
    issuer = _default_issuer(inventory, cluster, settings.issuer)
    return CertPlan(cluster=cluster_name, cert_name=name, issuer=issuer,
                    key_type=_key_type(inventory, settings.key_type, cluster, issuer),
                    renew_before=settings.renew_before or cluster.renew_before or inventory.renew_before,
                    hosts=hosts, subject=subject)


def other_plan(inventory: Inventory, cluster_name: str, name: str) -> CertPlan | None:
    """The plan of ``rest_client`` or ``db:<key>``; None for any other name (a slot, or unknown)."""
    cluster = inventory.cluster(cluster_name)
    if name == REST_CLIENT:
        if cluster.rest_client is None:
            raise ConfigError(f"clusters.{cluster_name}: rest_client is not managed (add a rest_client section)")
        return _own_plan(inventory, cluster_name, cluster, REST_CLIENT, cluster.rest_client, hosts=(),
                         subject=cluster.rest_client.subject)
    if name == LDAP_CLIENT:
        if cluster.ldap_client is None:
            raise ConfigError(f"clusters.{cluster_name}: ldap_client is not managed (add `ldap_client: {{}}`)")
        # CN and SAN: the cluster, as LDAP servers see it
        return _own_plan(inventory, cluster_name, cluster, LDAP_CLIENT, cluster.ldap_client,
                         hosts=cluster.ldap_client.hosts or (cluster.fqdn,))
    if not name.startswith(DATABASE_PREFIX):
        return None
    key = database_key(name)
    database = cluster.databases.get(key or "")
    if database is None:
        managed = ", ".join(cluster.databases) or "none"
        raise ConfigError(f"clusters.{cluster_name}: database {name[len(DATABASE_PREFIX):]!r} is not managed "
                          f"(databases: {managed})")
    issuer = _default_issuer(inventory, cluster, database.issuer)
    return CertPlan(cluster=cluster_name, cert_name=name, issuer=issuer,
                    key_type=_key_type(inventory, database.key_type, cluster, issuer),
                    renew_before=database.renew_before or cluster.renew_before or inventory.renew_before,
                    hosts=database.hosts or cluster.default_hosts())


__all__ = ["CertPlan", "impossible_plans", "other_plan", "rest_client_issuer_problem"]
