"""Values that flow between the layers: frozen dataclasses and enums, no I/O."""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any


class CertName(enum.StrEnum):
    """Certificate names exactly as the RS REST API spells them."""

    CM = "cm"
    API = "api"
    PROXY = "proxy"
    SYNCER = "syncer"
    METRICS_EXPORTER = "metrics_exporter"

    @property
    def is_served(self) -> bool:
        """syncer is a client certificate: no listener presents it."""
        return self is not CertName.SYNCER

    @property
    def is_coupled(self) -> bool:
        """Other clusters depend on it: a replica checks its source's proxy, a source its replica's syncer."""
        return self in (CertName.PROXY, CertName.SYNCER)


class KeyType(enum.StrEnum):
    ECDSA_P256 = "ecdsa-p256"
    ECDSA_P384 = "ecdsa-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"

    @property
    def is_rsa(self) -> bool:
        return self.value.startswith("rsa")


class SecretPEM(str):
    """A private key PEM. Behaves as ``str`` for the wire but never prints itself."""

    def __repr__(self) -> str:
        return "SecretPEM('<redacted>')"

    def __str__(self) -> str:  # f-strings and logging go through __str__/__format__
        return "<redacted private key>"

    def __format__(self, spec: str) -> str:
        return "<redacted private key>"

    def reveal(self) -> str:
        """The PEM text itself, for the one place that sends it (the RS client)."""
        return str.__str__(self)


@dataclass(frozen=True)
class CertRequest:
    """What an issuer is asked for."""

    cluster: str
    cert_name: CertName | str  # a cluster slot, or another target ("rest_client", "db:orders")
    hosts: tuple[str, ...]
    key_type: KeyType = KeyType.ECDSA_P256
    validity: timedelta | None = None
    subject: str | None = None  # RFC 2253 subject, byte for byte (a client certificate for RS login)
    client: bool = False  # a TLS client certificate: clientAuth only, the subject instead of SANs
    # the leaf PEM this certificate replaces: an ACME CA with ARI is told (RFC 9773 ``replaces``)
    replaces: str | None = field(default=None, repr=False)

    @property
    def common_name(self) -> str:
        return self.hosts[0]


@dataclass(frozen=True)
class ClientCertificate:
    """The tool's own client certificate for RS certificate (mTLS) login; the key never prints."""

    certificate: str  # leaf, then its chain (PEM)
    key: SecretPEM = field(repr=False)


@dataclass(frozen=True)
class RenewalInfo:
    """What a CA said of a certificate's renewal (ACME Renewal Information, RFC 9773): when to renew it
    (None: no window offered) and how long to wait before asking again (its Retry-After)."""

    due_at: datetime | None
    ask_again_in: timedelta


@dataclass(frozen=True)
class IssuedCert:
    """A fresh key, its leaf and the chain up to (not including) the root."""

    key_pem: SecretPEM
    leaf_pem: str
    chain_pem: str = ""  # intermediates, leaf-first order, may be empty

    @property
    def fullchain_pem(self) -> str:
        """Leaf followed by intermediates: what RS wants in ``certificate``."""
        leaf = self.leaf_pem if self.leaf_pem.endswith("\n") else self.leaf_pem + "\n"
        return leaf + self.chain_pem


@dataclass(frozen=True)
class Endpoint:
    """One place a certificate is served (or, for syncer, read from the API)."""

    cluster: str
    cert_name: CertName | str  # a cluster slot, or another target ("rest_client", "db:orders")
    node: str  # node uid as a string, or "api" for REST reads
    host: str
    port: int
    sni: str | None = None

    @property
    def label(self) -> str:
        if not self.port:  # not a listener: the cluster's copy read over the REST API
            return f"{self.cert_name}@cluster {self.host}"
        return f"{self.cert_name}@node{self.node} {self.host}:{self.port}"


_LABEL = re.compile(r"^[^@]+@node(?P<node>\S+) (?P<endpoint>(?P<address>.+):\d+)$")
_REST_LABEL = re.compile(r"^[^@]+@cluster (?P<read>.+)$")


def split_endpoint_label(label: str) -> tuple[str, str, str]:
    """``api@node1 127.0.77.1:9443`` -> (node ``1``, address ``127.0.77.1``, endpoint ``127.0.77.1:9443``); the
    cluster's REST copy -> (``cluster``, no address, what was read). Metrics keep one thing per label."""
    found = _LABEL.match(label)
    if found:
        return found["node"], found["address"], found["endpoint"]
    rest = _REST_LABEL.match(label)
    if rest:
        return "cluster", "", rest["read"]
    return label, "", label


@dataclass(frozen=True)
class ServedCert:
    """What one endpoint presented in one handshake (or failed to)."""

    endpoint: Endpoint
    fingerprint: str | None = None  # SHA-256 hex of the leaf DER, lower case
    subject: str | None = None
    sans: tuple[str, ...] = ()
    not_after: datetime | None = None
    not_before: datetime | None = None
    chain_der: tuple[bytes, ...] = ()
    tls_version: str | None = None
    leaf_der: bytes | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.fingerprint is not None


class Outcome(enum.StrEnum):
    VERIFIED = "verified"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    DRY_RUN = "dry_run"
    IN_PROGRESS = "in_progress"
    REFUSED = "refused"
    SUPERSEDED = "superseded"  # lost its lock lease to another rotation: stopped without pushing again


class ClusterState(enum.StrEnum):
    """What the endpoints of one certificate serve when a rotation that pushed ends."""

    OLD = "old"  # every endpoint serves the certificate from before the rotation
    NEW = "new"  # every endpoint serves the new certificate
    MIXED = "mixed"  # some serve one, some the other (or something else, or nothing)


class Trigger(enum.StrEnum):
    CLI = "cli"
    BEAT = "beat"
    CHATOPS = "chatops"
    API = "api"


@dataclass
class Step:
    name: str
    started_at: datetime
    finished_at: datetime | None = None
    ok: bool | None = None
    detail: str = ""

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "ok": self.ok,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Step:
        return cls(
            name=data["name"],
            started_at=datetime.fromisoformat(data["started_at"]),
            finished_at=datetime.fromisoformat(data["finished_at"]) if data.get("finished_at") else None,
            ok=data.get("ok"),
            detail=data.get("detail", ""),
        )


def new_rotation_id() -> str:
    """A rotation's id (its task's id too); retries add ``.<n>`` (``rotation.core.retry``)."""
    return uuid.uuid4().hex[:12]


# What a store's change feed (``rotation.adapters.state.base.Changes``) reports when it heard of a change
# but not of which rotation.
ANY_CHANGE = "*"


@dataclass
class RotationRecord:
    """The audit trail of one rotation. Holds fingerprints, never keys.

    A ``rotation policy apply`` of one cluster is recorded here too (``kind`` "policy"), in the same store,
    history and retention: ``cert_name`` is ``tls_policy`` (``core.targets.TLS_POLICY``), ``policy`` holds
    what it read, sent and ended as; the fields of a certificate (fingerprints, nodes, steps) stay empty."""

    id: str
    cluster: str
    cert_name: str
    trigger: str
    started_at: datetime
    finished_at: datetime | None = None
    outcome: Outcome = Outcome.IN_PROGRESS
    old_fingerprint: str | None = None
    new_fingerprint: str | None = None
    new_not_after: datetime | None = None
    issuer: str | None = None
    error: str | None = None
    retryable: bool = False  # the error is transient (cluster/CA unreachable): try again later
    retry_after: float | None = None  # seconds the CA or cluster asked us to wait
    requested_by: str | None = None  # who asked (chat user id, CLI user), for the audit trail
    problem: dict | None = None  # the CA's problem document (RFC 7807) when an ACME order failed
    dry_run: bool = False
    # refused because something it needs was held: the certificate's lock (another rotation), or the
    # issuer's budget (spent, or paused by the CA): never the certificate's failure
    blocked_by: str | None = None
    cluster_state: ClusterState | None = None  # after a push: what the endpoints serve at the end
    warnings: list[str] = field(default_factory=list)  # what the rotation accepted but an operator should know
    # What companions changed outside the certificate (peers, settings), with what undoes it: see
    # rotation.usecases.rotate.companions. Public data only (fingerprints, PEM certificates, ids).
    companions: list[dict[str, Any]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    # node label -> {"before": fp, "after": fp}
    nodes: dict[str, dict[str, str | None]] = field(default_factory=dict)
    # a policy apply's change (None for a rotation): {"status": what `policy apply` reported, "before" and
    # "after": the settings GET /v1/cluster read (TLS fields and Basic only; "after" null when not read),
    # "sent": the fields PUT /v1/cluster was sent (null: nothing sent, the cluster did not change)}
    policy: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        """``rotation``, or ``policy`` for a ``rotation policy apply``."""
        return "rotation" if self.policy is None else "policy"

    @property
    def pushed(self) -> bool:
        return any(step.name == "push" for step in self.steps)

    def policy_changes(self, shown: Callable[[str], str] = str, arrow: str = "->") -> list[str]:
        """A policy apply's change, one line per field sent: ``name 'before' -> 'after'`` (the settings read
        from the cluster; ``not read`` when they were not); nothing for a rotation, or an apply that sent
        nothing. Each name and value is the cluster's answer, outside text: passed through ``shown`` (a
        chat message's escaping), the words and arrow around them are not."""
        if self.policy is None or not self.policy.get("sent"):
            return []
        before, after = self.policy.get("before") or {}, self.policy.get("after")
        return [f"{shown(name)} {shown(repr(before.get(name)))} {arrow} "
                + (shown(repr(after.get(name))) if after is not None else f"not read (sent {shown(repr(value))})")
                for name, value in self.policy["sent"].items()]

    @property
    def waits_for_issuer(self) -> bool:
        """Refused at its order for the issuer's budget (``BudgetSpent``, in the ``issue`` step): a lock held
        refuses before any step. Its retries may wait far longer than anyone follows them."""
        return bool(self.blocked_by) and any(step.name == "issue" for step in self.steps)

    @property
    def counts_as_failure(self) -> bool:
        """Backoff counts real failures only: not a dry run, not a refusal because another rotation
        held the certificate or the issuer's budget was spent, not a rotation superseded by another."""
        if self.dry_run or self.blocked_by:
            return False
        return self.outcome in (Outcome.FAILED, Outcome.ROLLED_BACK, Outcome.REFUSED)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "cluster": self.cluster,
            "cert_name": self.cert_name,
            "trigger": self.trigger,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "outcome": str(self.outcome),
            "old_fingerprint": self.old_fingerprint,
            "new_fingerprint": self.new_fingerprint,
            "new_not_after": self.new_not_after.isoformat() if self.new_not_after else None,
            "issuer": self.issuer,
            "error": self.error,
            "retryable": self.retryable,
            "retry_after": self.retry_after,
            "requested_by": self.requested_by,
            "problem": self.problem,
            "dry_run": self.dry_run,
            "blocked_by": self.blocked_by,
            "cluster_state": str(self.cluster_state) if self.cluster_state else None,
            "warnings": list(self.warnings),
            "companions": list(self.companions),
            "steps": [s.to_dict() for s in self.steps],
            "nodes": self.nodes,
            "policy": self.policy,
        }

    @classmethod
    def from_dict(cls, data: dict) -> RotationRecord:
        def when(key: str) -> datetime | None:
            return datetime.fromisoformat(data[key]) if data.get(key) else None

        return cls(
            id=data["id"],
            cluster=data["cluster"],
            cert_name=data["cert_name"],
            trigger=data["trigger"],
            started_at=datetime.fromisoformat(data["started_at"]),
            finished_at=when("finished_at"),
            outcome=Outcome(data["outcome"]),
            old_fingerprint=data.get("old_fingerprint"),
            new_fingerprint=data.get("new_fingerprint"),
            new_not_after=when("new_not_after"),
            issuer=data.get("issuer"),
            error=data.get("error"),
            retryable=bool(data.get("retryable", False)),
            retry_after=data.get("retry_after"),
            requested_by=data.get("requested_by"),
            problem=data.get("problem"),
            dry_run=bool(data.get("dry_run", False)),
            blocked_by=data.get("blocked_by"),
            cluster_state=ClusterState(data["cluster_state"]) if data.get("cluster_state") else None,
            warnings=list(data.get("warnings") or ()),
            companions=list(data.get("companions") or ()),
            steps=[Step.from_dict(s) for s in data.get("steps", [])],
            nodes=data.get("nodes", {}),
            policy=data.get("policy"),
        )
