"""Cluster state of the simulator: configuration, nodes, certificates, settings and faults.

Everything here is plain data mutated on the simulator's event loop; no sockets.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from .bdb_certs import BdbCertificates
from .nodes import DEFAULT_DATABASES, CertSlot, Database, NodeState
from .profile import check_options
from .tls import MAIN_NAMES, CertificateAuthority, LeafSpec, Material, material_from_pems
from .versions import BULK_PUT_SINCE, DEFAULT_VERSION, version_tuple

TLS_VERSIONS = ("1", "1.0", "1.1", "1.2", "1.3")
PROXY_POLICIES = ("all-nodes", "single")

DATA_CIPHER_LIST = (
    "DEFAULT:!aNULL:!eNULL:!EXPORT:!DES:!3DES:!RC4:!MD5:!PSK:!aECDH:!EDH-DSS-DES-CBC3-SHA"
    ":!EDH-RSA-DES-CBC3-SHA:!KRB5-DES-CBC3-SHA"
)
TLS13_SUITES = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"


@dataclass
class SimulatorConfig:
    fqdn: str = "cluster.sim.local"
    nodes: int = 3
    first_address: str = "127.0.10.1"
    cm_port: int = 8443
    api_port: int = 9443
    metrics_port: int = 8070
    databases: list[Database] | None = None  # None -> DEFAULT_DATABASES
    expires_in: dt.timedelta = dt.timedelta(days=365)
    initial_not_before: dt.datetime | None = None  # None -> one hour ago
    version: str = DEFAULT_VERSION
    admin_password: str | None = None  # None -> random
    viewer_password: str | None = None  # None -> random
    state_dir: Path = field(default_factory=lambda: Path(".rotation/sim"))
    connect_delay: float = 0.0
    # awaited with the listener ("cm", "api", "db:1", ...) once a connection is accepted, before its
    # handshake: tests count how many handshakes a client has in flight at once (and may hold them)
    connect_hook: Callable[[str], Awaitable[None]] | None = field(default=None, repr=False, compare=False)
    api_latency: float = 0.0
    resync_on_return: bool = True
    handshake_timeout: float = 10.0
    sentinel_port: int | None = 8001  # the discovery service (Sentinel API); None: not simulated
    sentinel_cert: str = "proxy"  # which certificate it presents (RS does not document it)
    # today's CAs (issue 14; rules in profile.py, slots.py, ocsp.py): all off by default
    cert_profile: str = "none"  # upload rules: "none" | "as-documented"
    internode_certs: bool = False  # hold RS's own INE certificates (7.22.2+)
    ine_fallback: bool = False  # swap a customer INE certificate for RS's own 5 days before expiry
    extra_certificates: tuple[str, ...] = ()  # more names held from the start (e.g. ones the product lacks)
    ocsp_without_url: str = "fail"  # stapling on, proxy cert without OCSP URL: database handshakes "fail" | "accept"
    proxy_ocsp_url: str | None = None  # AIA OCSP URL of the initial proxy certificate

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        if self.nodes < 1:
            raise ValueError("nodes must be at least 1")
        ports = [self.cm_port, self.api_port, self.metrics_port, *(db.port for db in self.database_list)]
        ports += [self.sentinel_port] if self.sentinel_port else []
        if self.sentinel_cert not in MAIN_NAMES or self.sentinel_cert == "syncer":
            raise ValueError(f"sentinel_cert must be one of the served certificates, not {self.sentinel_cert!r}")
        if len(set(ports)) != len(ports):
            raise ValueError(f"ports must be distinct: {ports}")
        for db in self.database_list:
            if db.proxy_policy not in PROXY_POLICIES:
                raise ValueError(f"database {db.name}: proxy_policy must be one of {PROXY_POLICIES}")
        ipaddress.IPv4Address(self.first_address)
        check_options(self)

    @property
    def database_list(self) -> list[Database]:
        return list(DEFAULT_DATABASES if self.databases is None else self.databases)

    @property
    def addresses(self) -> list[str]:
        first = ipaddress.IPv4Address(self.first_address)
        return [str(first + offset) for offset in range(self.nodes)]


@dataclass(frozen=True)
class StaleRule:
    seconds: float | None  # None = until cleared
    cert_name: str | None  # None = every certificate


@dataclass
class RequestFault:
    """``fail_requests``: the next ``count`` matching REST requests get ``status`` instead of an answer
    (a 3xx carries ``location``, as a proxy in front of the API would send)."""

    count: int
    status: int
    method: str | None = None  # None = any method
    path: str | None = None  # a path prefix; None = any path
    location: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (self.path is None or path.startswith(self.path))


#: what ``fail_nth`` does to its request: an error answer (nothing applied; RS's 409 to a certificate change
#: reaches the first node only, as with ``fail_next``), a 500 page that is no JSON (a proxy's), the request
#: done and the connection dropped unanswered ("reset"), or done and unanswered until the client gave up
NTH_FAULT_KINDS = ("503", "409", "500-html", "reset", "hang")


@dataclass
class NthFault:
    """``fail_nth``: ``skip`` more REST requests are answered, then one gets ``kind``."""

    skip: int
    kind: str
    hang_seconds: float = 2.0


def default_settings() -> dict[str, object]:
    """The cluster settings GET /v1/cluster reads (a future PUT /v1/cluster edits this dict)."""
    return {
        "min_control_TLS_version": "1.2",
        "min_data_TLS_version": "1.2",
        "min_sentinel_TLS_version": "1.2",
        "sentinel_tls_mode": "allowed",
        "sentinel_ssl_policy": "allowed",
        "control_cipher_suites": "DEFAULT:!3DES",
        "control_cipher_suites_tls_1_3": TLS13_SUITES,
        "data_cipher_list": DATA_CIPHER_LIST,
        "data_cipher_suites_tls_1_3": [],
        "sentinel_cipher_suites": [],
        "sentinel_cipher_suites_tls_1_3": TLS13_SUITES,
        "mtls_certificate_authentication": False,
        "alert_settings": {
            "cluster_certs_about_to_expire": {"enabled": True, "threshold": "45"},
            "node_internal_certs_about_to_expire": {"enabled": True, "threshold": "45"},
        },
        "handle_redirects": False,
        "http_support": True,
    }


class ClusterState:
    """Cluster-level certificates, nodes, settings and the fault switches."""

    def __init__(self, config: SimulatorConfig, ca: CertificateAuthority) -> None:
        self.config = config
        self.version = config.version
        not_before = config.initial_not_before or dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        not_after = dt.datetime.now(dt.UTC) + config.expires_in
        self.certs: dict[str, Material] = {}
        for name in MAIN_NAMES:
            spec = LeafSpec(ocsp_url=config.proxy_ocsp_url) if name == "proxy" else None
            cert_pem, key_pem = ca.issue(config.fqdn, not_before, not_after, spec)
            self.certs[name] = material_from_pems(name, cert_pem, key_pem)
        self.nodes: dict[int, NodeState] = {
            uid: NodeState(uid=uid, addr=addr, hostname=f"node{uid}.{config.fqdn}",
                           certs={name: CertSlot(m) for name, m in self.certs.items()})
            for uid, addr in enumerate(config.addresses, start=1)
        }
        self.settings = default_settings()
        for node in self.nodes.values():
            node.sentinel = self.sentinel_settings()
        self.fail_queue: deque[int] = deque()
        self.request_faults: list[RequestFault] = []
        self.nth_faults: list[NthFault] = []
        self.request_log: list[str] | None = None  # "METHOD target" of each REST request, once log_requests()
        self.slow_seconds = 0.0
        self.stale_rules: dict[int, StaleRule] = {}
        self.received_update_bodies: deque[bytes] = deque(maxlen=20)
        self.received_cluster_updates: deque[tuple[bool, bytes]] = deque(maxlen=20)  # (dry_run, body)
        self.update_count = 0
        self.bdb_certs = BdbCertificates(self)

    @property
    def bulk_put_available(self) -> bool:
        return version_tuple(self.version)[:3] >= BULK_PUT_SINCE

    def database_nodes(self, db: Database) -> list[NodeState]:
        nodes = sorted(self.nodes.values(), key=lambda n: n.uid)
        return nodes[:1] if db.proxy_policy == "single" else nodes

    # -- certificate updates -------------------------------------------------------------------

    def apply(self, materials: list[Material]) -> tuple[int, dict[str, str]]:
        """Apply validated certificates; returns (status, body). Consumes one queued failure."""
        self.update_count += 1
        failure = self.take_failure()
        if failure is not None and failure[0] != 409:
            return failure
        partial = failure is not None
        for material in materials:
            self.certs[material.name] = material
        up = [n for n in sorted(self.nodes.values(), key=lambda n: n.uid) if not n.down]
        targets = up[:1] if partial else up
        for node in targets:
            self._deliver(node, materials)
        if partial or len(up) < len(self.nodes):
            missed = sorted(uid for uid in self.nodes if uid not in {n.uid for n in targets})
            return 409, self.not_all_updated(missed)
        return 200, {}

    def take_failure(self) -> tuple[int, dict[str, str]] | None:
        """Pop the next injected failure as (status, error body); 409 means "reach the first node only"."""
        if not self.fail_queue:
            return None
        status = self.fail_queue.popleft()
        code = {409: "nodes_not_updated", 500: "internal_error", 503: "service_unavailable"}.get(
            status, "injected_failure")
        return status, {"error_code": code, "description": f"Injected failure ({status})"}

    @staticmethod
    def not_all_updated(missed: list[int]) -> dict[str, str]:
        return {"error_code": "nodes_not_updated",
                "description": f"Not all nodes were updated (nodes {missed} missed the change)"}

    def _deliver(self, node: NodeState, materials: list[Material]) -> None:
        rule = self.stale_rules.get(node.uid)
        for material in materials:
            if material.name not in node.certs:
                continue  # opaque names live at cluster level only
            hold = rule is not None and rule.cert_name in (None, material.name)
            node.certs[material.name].put(material, rule.seconds if rule else None, hold)

    def resync(self, node: NodeState) -> None:
        for name, slot in node.certs.items():
            slot.put(self.certs[name], None, hold=False)
        self.bdb_certs.resync(node)

    # -- faults ----------------------------------------------------------------------------------

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        if count < 0 or not 400 <= status <= 599:
            raise ValueError("fail_next needs count >= 0 and a 4xx/5xx status")
        self.fail_queue.extend([status] * count)

    def fail_requests(self, count: int = 1, status: int = 503, method: str | None = None, path: str | None = None,
                      location: str | None = None) -> None:
        """The next ``count`` REST requests (matching ``method`` and the ``path`` prefix) answer ``status``:
        a 5xx or 4xx error body, or a 3xx redirect to ``location``. Nothing is applied."""
        if count < 0 or not 300 <= status <= 599:
            raise ValueError("fail_requests needs count >= 0 and a 3xx/4xx/5xx status")
        if 300 <= status < 400 and not location:
            raise ValueError("a 3xx needs a location")
        self.request_faults.append(RequestFault(count, status, method.upper() if method else None, path, location))

    def take_request_fault(self, method: str, path: str) -> RequestFault | None:
        """The fault that answers this request, if any (consumes one of its count)."""
        for fault in self.request_faults:
            if fault.count > 0 and fault.matches(method, path):
                fault.count -= 1
                return fault
        return None

    def fail_nth(self, n: int, kind: str, hang_seconds: float = 2.0) -> None:
        """The ``n``-th REST request from now (1-based, every method and path, ``/_sim/`` aside) gets ``kind``
        (:data:`NTH_FAULT_KINDS`); several may be pending, each counted from now."""
        if n < 1 or kind not in NTH_FAULT_KINDS:
            raise ValueError(f"fail_nth needs n >= 1 and a kind of {NTH_FAULT_KINDS}")
        self.nth_faults.append(NthFault(n - 1, kind, hang_seconds))

    def take_nth_fault(self, method: str, target: str) -> NthFault | None:
        """Note one REST request (the log, the ``fail_nth`` counts): the fault it meets, if any."""
        if self.request_log is not None:
            self.request_log.append(f"{method} {target}")
        met = None
        for fault in self.nth_faults:
            if fault.skip == 0 and met is None:
                met = fault
            fault.skip -= 1
        self.nth_faults = [fault for fault in self.nth_faults if fault.skip >= 0]
        return met

    def stale(self, uid: int, seconds: float | None = None, cert_name: str | None = None) -> None:
        node = self.node(uid)
        if cert_name is not None and cert_name not in node.certs:
            raise ValueError(f"unknown certificate name {cert_name!r}")
        if seconds is not None and seconds <= 0:
            self.stale_rules.pop(uid, None)
            for slot in node.certs.values():
                slot.release()
            return
        self.stale_rules[uid] = StaleRule(seconds, cert_name)

    def clear_faults(self) -> None:
        self.fail_queue.clear()
        self.request_faults.clear()
        self.nth_faults.clear()
        self.slow_seconds = 0.0
        self.stale_rules.clear()
        for node in self.nodes.values():
            node.tls_overrides.clear()
            for slot in node.certs.values():
                slot.release()
        self.bdb_certs.clear_faults()

    # -- TLS policy ------------------------------------------------------------------------------

    def sentinel_settings(self) -> dict[str, str]:
        return {"mode": str(self.settings["sentinel_tls_mode"]),
                "min_version": str(self.settings["min_sentinel_TLS_version"])}

    def restart_sentinel(self, uid: int | None = None) -> None:
        """``supervisorctl restart sentinel_service`` on one node (or all): it picks up the settings."""
        for node in ([self.node(uid)] if uid is not None else self.nodes.values()):
            node.sentinel = self.sentinel_settings()

    def listener_tls(self, node: NodeState, kind: str) -> tuple[str, str | None]:
        """(minimum TLS version, TLS <= 1.2 cipher list) a new handshake on ``kind`` gets."""
        settings = self.settings
        if kind == "sentinel":
            minimum, ciphers = node.sentinel["min_version"], None
        elif kind.startswith("db:"):
            minimum, ciphers = str(settings["min_data_TLS_version"]), str(settings["data_cipher_list"])
        else:
            minimum, ciphers = str(settings["min_control_TLS_version"]), str(settings["control_cipher_suites"])
        override = node.tls_overrides.get(kind) or (node.tls_overrides.get("proxy") if kind.startswith("db:") else None)
        if override:
            minimum, ciphers = override.get("min_version") or minimum, override.get("ciphers") or ciphers
        return minimum, ciphers

    def override_node_tls(
        self, uid: int, listener: str, min_version: str | None = None, ciphers: str | None = None
    ) -> None:
        """Plant drift: this node's ``listener`` ignores the cluster settings (both None: undo)."""
        node = self.node(uid)
        known = ("api", "cm", "metrics_exporter", "proxy", "sentinel")
        if listener not in known and not (listener.startswith("db:") and listener[3:].isdigit()):
            raise ValueError(f"unknown listener {listener!r}; one of {known} or db:<uid>")
        if min_version is not None and min_version not in TLS_VERSIONS:
            raise ValueError(f"min_version must be one of {TLS_VERSIONS}")
        if ciphers is not None:
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(ciphers)
            except ssl.SSLError as exc:
                raise ValueError(f"no cipher can be selected from {ciphers!r}") from exc
        if min_version is None and ciphers is None:
            node.tls_overrides.pop(listener, None)
            return
        node.tls_overrides[listener] = {k: v for k, v in (("min_version", min_version), ("ciphers", ciphers)) if v}

    def node(self, uid: int) -> NodeState:
        try:
            return self.nodes[uid]
        except KeyError:
            raise ValueError(f"no node with uid {uid}") from None

    def faults_snapshot(self) -> dict[str, object]:
        return {
            "fail_next": list(self.fail_queue),
            "fail_requests": [{"count": f.count, "status": f.status, "method": f.method, "path": f.path}
                              for f in self.request_faults if f.count > 0],
            "fail_nth": [{"n": f.skip + 1, "kind": f.kind} for f in self.nth_faults],
            "slow": self.slow_seconds,
            "stale": {str(uid): {"seconds": r.seconds, "cert_name": r.cert_name}
                      for uid, r in self.stale_rules.items()},
            "down": sorted(uid for uid, n in self.nodes.items() if n.down),
            "tls_overrides": {str(uid): dict(n.tls_overrides) for uid, n in self.nodes.items() if n.tls_overrides},
            "bdb_stale": self.bdb_certs.faults_snapshot(),
        }

    def snapshot(self) -> dict[str, object]:
        """GET /_sim/state: per node per certificate what a new handshake would present."""
        nodes = {}
        for uid, node in sorted(self.nodes.items()):
            nodes[str(uid)] = {
                "addr": node.addr,
                "status": "down" if node.down else "active",
                "fingerprints": {name: node.served(name).fingerprint for name in node.certs},
                "pending": {name: slot.pending.fingerprint for name, slot in node.certs.items()
                            if slot.pending is not None},
                "sentinel": dict(node.sentinel),
            }
        return {
            "fqdn": self.config.fqdn,
            "version": self.version,
            "cluster": {name: m.fingerprint for name, m in self.certs.items()},
            "nodes": nodes,
            "faults": self.faults_snapshot(),
            "update_count": self.update_count,
            "bdb_certificates": self.bdb_certs.snapshot(),
        }
