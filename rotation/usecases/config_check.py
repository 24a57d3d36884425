"""`rotation config check`: is everything the inventory names usable, before anything needs it?

Loading the inventory proves its shape. This goes further, and changes nothing: every secret can
be read, every file loads, every issuer can issue (its files, keys, directory), every cluster
answers its REST API with our credentials over verified TLS, and whatever the plans need can be
done. Each check is a small function from (inventory, what it may use) to findings; more checks
join :data:`CHECKS`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

from rotation.adapters.cert_login import prove_login, refusals
from rotation.adapters.client_files import ClientFiles
from rotation.adapters.cluster import open_cluster
from rotation.adapters.issuers.factory import IssuerFactory
from rotation.config import Inventory
from rotation.config.files import read_certificates, read_file
from rotation.config.issuers import PROFILE_LIFETIMES
from rotation.config.plans import impossible_plans
from rotation.core.durations import format_duration
from rotation.core.errors import ClusterAPIError, RotationError
from rotation.core.model import CertName
from rotation.core.ocsp import responder_urls
from rotation.core.versions import OCSP_STAPLING_SINCE, at_least


class Severity(enum.StrEnum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    """One thing checked: where in the inventory (``clusters.east.password_env``), and what was found."""

    where: str
    message: str
    severity: Severity = Severity.OK

    def to_dict(self) -> dict[str, str]:
        return {"where": self.where, "severity": str(self.severity), "message": self.message}


@dataclass(frozen=True)
class CheckInputs:
    """What the checks may use: the issuer factory, and whether to go to the network."""

    issuers: IssuerFactory
    offline: bool = False
    clusters: Sequence[str] = ()  # empty: every cluster
    scan_every: timedelta | None = None  # ROTATION_SCAN_INTERVAL + ROTATION_JITTER (None: not checked)


Check = Callable[[Inventory, CheckInputs], Iterable[Finding]]


def _attempt(where: str, ok: str, action: Callable[[], Any], *, warn: bool = False) -> Finding:
    try:
        action()
    except RotationError as exc:
        return Finding(where, exc.message, Severity.WARNING if warn else Severity.ERROR)
    return Finding(where, ok)


def _clusters(inventory: Inventory, inputs: CheckInputs) -> list[str]:
    return list(inputs.clusters or inventory.clusters)


def check_cluster_secrets(inventory: Inventory, inputs: CheckInputs) -> Iterable[Finding]:
    for name in _clusters(inventory, inputs):
        cluster = inventory.clusters[name]
        if cluster.username:
            yield _attempt(f"clusters.{name}.password", "readable", partial(cluster.password, name))
        for path in cluster.verify_paths:
            yield _attempt(f"clusters.{name}.verify", f"{path} loads", partial(read_file, path, what="verify bundle"))


def check_issuers(inventory: Inventory, inputs: CheckInputs) -> Iterable[Finding]:
    """Every issuer a checked cluster uses builds and passes its own check (files, keys, and for ACME
    the directory, which needs the network)."""
    used = {inventory.plan(name, cert).issuer for name in _clusters(inventory, inputs)
            for cert in inventory.clusters[name].certificates}
    for issuer_name in sorted(n for n in used if n):
        where = f"issuers.{issuer_name}"
        if inputs.offline and inventory.issuers[issuer_name].type == "acme":
            yield Finding(where, "not checked (--offline: the ACME directory is on the network)", Severity.WARNING)
            continue
        yield _attempt(where, "usable", partial(_issuer_usable, inventory, inputs.issuers, issuer_name))


def _issuer_usable(inventory: Inventory, issuers: IssuerFactory, name: str) -> None:
    issuers.issuer(inventory, name).check()


def check_chatops_secrets(inventory: Inventory, inputs: CheckInputs) -> Iterable[Finding]:
    chatops = inventory.chatops
    for platform, settings, read in (("slack", chatops.slack, "signing_secret"),
                                     ("mattermost", chatops.mattermost, "token"),
                                     ("generic", chatops.generic, "secret")):
        if settings is not None:
            yield _attempt(f"chatops.{platform}", "secret readable and of the right form",
                           getattr(settings, read))
    if chatops.notify is not None:
        yield _attempt("chatops.notify", "URL readable", chatops.notify_url)


def check_cluster_login(inventory: Inventory, inputs: CheckInputs) -> Iterable[Finding]:
    """The REST API answers over verified TLS and accepts our credentials (GET /v1/cluster, /v1/nodes)."""
    if inputs.offline:
        return
    for name in _clusters(inventory, inputs):
        yield _attempt(f"clusters.{name}.url", "REST API answers and accepts the credentials",
                       partial(_logs_in, inventory, name))


def _logs_in(inventory: Inventory, cluster: str) -> None:
    with open_cluster(inventory, cluster) as session:
        session.view(refresh=True)


def check_change_permission(inventory: Inventory, inputs: CheckInputs) -> Iterable[Finding]:
    """The credentials may change the cluster (``update_cluster``, admin only): ``PUT /v1/cluster?dry_run``
    with nothing in it, which RS validates and never applies. Only a 403 is a finding: any other failure
    is the login check's to name."""
    if inputs.offline:
        return
    for name in _clusters(inventory, inputs):
        cluster = inventory.clusters[name]
        where = f"clusters.{name}.{'username' if cluster.username else 'client_cert_file'}"
        try:
            with open_cluster(inventory, name) as session:
                session.update_cluster({}, dry_run=True)
        except ClusterAPIError as exc:
            if exc.status == 403:
                yield Finding(where, f"these credentials may read the cluster but not change it ({exc.message}): "
                              "every rotation would be refused; log in as a user with the admin role",
                              Severity.ERROR)
        except RotationError:
            continue


def check_certificate_login(inventory: Inventory, inputs: CheckInputs) -> Iterable[Finding]:
    """The client certificate loads, and (online) logs in alone on every node's REST port."""
    for name in _clusters(inventory, inputs):
        cluster = inventory.clusters[name]
        if not (cluster.client_cert_file or cluster.client_cert_env):
            continue
        where = f"clusters.{name}.client_cert_{'file' if cluster.client_cert_file else 'env'}"
        try:
            client_cert = cluster.client_certificate(name)
        except RotationError as exc:
            yield Finding(where, exc.message, Severity.ERROR)
            continue
        if inputs.offline or client_cert is None:
            yield Finding(where, "certificate and key load and match (login not tried: --offline)")
            continue
        try:
            with open_cluster(inventory, name) as session:
                results = prove_login(session, client_cert)
        except RotationError as exc:
            yield Finding(where, f"cannot list the nodes to log in to: {exc.message}", Severity.ERROR)
            continue
        problem = refusals(results)
        nodes = ", ".join(f"{r.node} ({r.address}:{r.port})" for r in results)
        yield Finding(where, f"certificate login refused: {problem}" if problem
                      else f"certificate login works on every node's REST port: {nodes}",
                      Severity.ERROR if problem else Severity.OK)


def check_rest_client_files(inventory: Inventory, inputs: CheckInputs) -> Iterable[Finding]:
    """A managed rest_client is renewed into the files the inventory names: their folder must be writable."""
    for name in _clusters(inventory, inputs):
        cluster = inventory.clusters[name]
        if cluster.rest_client is None or not cluster.client_cert_file or not cluster.client_key_file:
            continue
        problem = ClientFiles(cluster.client_cert_file, cluster.client_key_file).unwritable()
        yield Finding(f"clusters.{name}.rest_client", problem or "its files can be replaced by this user",
                      Severity.ERROR if problem else Severity.OK)


def check_ocsp_stapling(inventory: Inventory, inputs: CheckInputs) -> Iterable[Finding]:
    """A cluster that staples ``proxy`` (RS 6.2.12+, ``GET /v1/ocsp``) whose proxy issuer puts no OCSP URL in
    what it issues: the next proxy rotation would be refused (or turn stapling off, when opted in)."""
    if inputs.offline:
        return
    for name in _clusters(inventory, inputs):
        cluster = inventory.clusters[name]
        issuer = inventory.plan(name, CertName.PROXY).issuer if CertName.PROXY in cluster.certificates else None
        if issuer is None:
            continue
        try:
            with open_cluster(inventory, name) as session:
                if not at_least(session.view().version, OCSP_STAPLING_SINCE) or not session.ocsp().stapling:
                    continue
        except RotationError as exc:
            yield Finding(f"clusters.{name}.ocsp", f"OCSP stapling not read: {exc.message}", Severity.WARNING)
            continue
        where, missing = f"issuers.{issuer}", _no_ocsp_url(inventory, issuer)
        if missing is None:
            yield Finding(where, f"puts an OCSP URL in what it issues: {name} can keep stapling the proxy")
            continue
        then = ("the rotation will turn stapling off (ocsp: disable_when_missing)"
                if cluster.ocsp == "disable_when_missing" else
                f"its proxy rotation will be refused (or set clusters.{name}.ocsp: disable_when_missing)")
        yield Finding(where, f"{name} staples the proxy certificate, but {missing}: {then}", Severity.WARNING)


def _no_ocsp_url(inventory: Inventory, issuer: str) -> str | None:
    """Why ``issuer``'s certificates may carry no OCSP URL (None: they carry one)."""
    settings = inventory.issuers[issuer]
    if settings.type == "internal_ca":
        return None if settings.ocsp_url else "this internal CA has no ocsp_url"
    if settings.type == "files":
        try:
            leaf = read_certificates(settings.cert_file, what="certificate")[0]
        except RotationError as exc:
            return f"its certificate could not be read ({exc.message})"
        return None if responder_urls(leaf) else f"{settings.cert_file} has no OCSP URL"
    return ("an ACME CA may put none (Let's Encrypt has put none since May 2025), and it cannot be told "
            "before an order")


def check_issuer_capabilities(inventory: Inventory, inputs: CheckInputs) -> Iterable[Finding]:
    """Every plan can be fulfilled by its issuer: a client slot needs an issuer that issues clientAuth, a
    certificate no more names than the CA allows (``impossible_plans``, also run at inventory load)."""
    wanted, refused = set(_clusters(inventory, inputs)), set()
    for problem in impossible_plans(inventory):
        where, _, message = problem.partition(": ")
        if where.split(".")[1] in wanted:
            refused.add(where.split(".")[1])
            yield Finding(where, message, Severity.ERROR)
    for name in sorted(wanted - refused):
        for target in inventory.targets(name):
            issuer = inventory.plan(name, target).issuer
            settings = inventory.issuers.get(issuer or "")
            if settings is not None and settings.type == "acme":
                client_auth = "yes" if settings.issues_client_auth else "no"
                yield Finding(f"clusters.{name}.{target}", f"issuer {issuer!r} can issue it (clientAuth: "
                              f"{client_auth}, at most {settings.names_limit} names)")


def check_renewal_room(inventory: Inventory, inputs: CheckInputs) -> Iterable[Finding]:
    """renew_before leaves room for a retry: a certificate inside it is scanned at least twice before it
    expires. With less, one failed rotation (or a scan falling just after it enters) lets it expire. Shares
    count where the lifetime is known (an internal CA's validity, a known ACME profile)."""
    if inputs.scan_every is None:
        return
    for name in _clusters(inventory, inputs):
        for target in inventory.targets(name):
            plan = inventory.plan(name, target)
            settings = inventory.issuers.get(plan.issuer or "")
            lifetime = (settings.validity if settings is not None and settings.type == "internal_ca" else
                        PROFILE_LIFETIMES.get(settings.profile or "") if settings is not None
                        and settings.type == "acme" else None)
            threshold = plan.renew_before.absolute or (plan.renew_before.threshold(lifetime) if lifetime else None)
            if threshold is not None and threshold < 2 * inputs.scan_every:
                yield Finding(f"clusters.{name}.{target}",
                              f"renew_before {plan.renew_before} ({format_duration(threshold)}) leaves room for fewer "
                              f"than two scans (every {format_duration(inputs.scan_every)} with the jitter) before "
                              "expiry: one failed rotation and it expires; raise renew_before or scan more often",
                              Severity.WARNING)


def check_has_clusters(inventory: Inventory, inputs: CheckInputs) -> Iterable[Finding]:
    """An inventory with no cluster is usable, but likely not the one meant (an empty file)."""
    if not inventory.clusters:
        yield Finding("clusters", "none in the inventory: nothing to check or rotate", Severity.WARNING)


CHECKS: tuple[Check, ...] = (check_has_clusters, check_cluster_secrets, check_issuers, check_chatops_secrets,
                             check_cluster_login, check_change_permission, check_certificate_login,
                             check_rest_client_files, check_ocsp_stapling, check_issuer_capabilities,
                             check_renewal_room)


@dataclass
class ConfigReport:
    findings: list[Finding] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0: usable (warnings allowed); 2: something named cannot be used."""
        return 2 if any(f.severity is Severity.ERROR for f in self.findings) else 0

    def to_dict(self) -> dict[str, Any]:
        return {"findings": [f.to_dict() for f in self.findings], "exit_code": self.exit_code}


def check_config(inventory: Inventory, inputs: CheckInputs, checks: Sequence[Check] = CHECKS) -> ConfigReport:
    """Run every check; one that fails unexpectedly is a finding too, never a traceback."""
    report = ConfigReport()
    for check in checks:
        try:
            report.findings.extend(check(inventory, inputs))
        except RotationError as exc:
            report.findings.append(Finding(check.__name__, exc.message, Severity.ERROR))
    return report


__all__ = ["CHECKS", "Check", "CheckInputs", "ConfigReport", "Finding", "Severity", "check_config"]
