"""Proof that a client certificate logs in on every node's REST port (RS certificate login).

Certificate login is checked by each node when a connection is made (``mtls_trusted_ca``, the
certificate user's subject), so a login through the cluster's URL proves it on one node only.
Before the tool relies on a certificate (``rotation config check``, switching to a renewed one of
its own, turning Basic off, changing ``mtls_trusted_ca``) it logs in with that certificate alone,
no Basic credentials, on every node: a new client (a fresh handshake) per node, a few at a time.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from rotation.adapters.cluster import ClusterSession, verify_of
from rotation.adapters.rs.client import RSClient
from rotation.core.errors import ClusterRejected, RotationError
from rotation.core.model import ClientCertificate
from rotation.core.topology import NodeInfo

MAX_AT_ONCE = 8


@dataclass(frozen=True)
class NodeLogin:
    """One node's answer to a login with the certificate alone."""

    node: str
    address: str
    port: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def label(self) -> str:
        return f"node {self.node} ({self.address}:{self.port})"


def prove_login(session: ClusterSession, client_cert: ClientCertificate) -> list[NodeLogin]:
    """Log in with ``client_cert`` alone (``GET /v1/cluster``) on every node of the cluster, down ones
    included (they fail: a node the proof did not reach is not proven)."""
    view = session.view()
    settings = session.settings

    def attempt(node: NodeInfo) -> NodeLogin:
        address = view.address_of(node)
        host = f"[{address}]" if ":" in address else address
        if node.status != "active":
            return NodeLogin(str(node.uid), address, view.api_port, f"the node is {node.status}")
        try:  # the address is RS's text: a client for it may not even be built
            client = RSClient(f"https://{host}:{view.api_port}", None, None, client_cert=client_cert,
                              cluster=session.name, verify=verify_of(settings), server_name=settings.server_name,
                              timeout=settings.request_timeout.total_seconds(), extra_trust=session.trust)
        except ClusterRejected as exc:
            return NodeLogin(str(node.uid), address, view.api_port, exc.message)
        try:
            with client:
                client.cluster_info()
        except RotationError as exc:
            return NodeLogin(str(node.uid), address, view.api_port, exc.message)
        return NodeLogin(str(node.uid), address, view.api_port)

    nodes = list(view.nodes)
    if not nodes:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(len(nodes), settings.concurrency, MAX_AT_ONCE)),
                            thread_name_prefix="cert-login") as pool:
        return list(pool.map(attempt, nodes))


def refusals(results: list[NodeLogin]) -> str | None:
    """One line naming the nodes that refused, or None when every node logged in."""
    failed = [r for r in results if not r.ok]
    if not results:
        return "the cluster lists no node to log in to"
    if not failed:
        return None
    return "; ".join(f"{r.label}: {r.error}" for r in failed[:5]) + (f" (and {len(failed) - 5} more)"
                                                                        if len(failed) > 5 else "")


__all__ = ["NodeLogin", "prove_login", "refusals"]
