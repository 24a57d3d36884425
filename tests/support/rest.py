"""The simulator's REST API straight through httpx (Basic or a client certificate), and client CAs."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path
from typing import Any

import httpx

from rotation.simulator import ClusterSimulator
from rotation.simulator.tls import CertificateAuthority
from rotation.simulator.users import issue_client_certificate

FQDN = "cluster.test.local"
NOW = dt.datetime.now(dt.UTC)


def client_ca(name: str) -> CertificateAuthority:
    return CertificateAuthority.create(name, NOW - dt.timedelta(hours=1), NOW + dt.timedelta(days=30))


def client_files(directory: Path, ca: CertificateAuthority, subject: str, *dns: str) -> tuple[Path, Path]:
    """A client certificate and key from ``ca`` with exactly ``subject``, as files."""
    cert, key = issue_client_certificate(ca, subject, NOW - dt.timedelta(hours=1), NOW + dt.timedelta(days=5), dns)
    stem = directory / f"client-{abs(hash((subject, ca.pem, dns)))}"
    stem.with_suffix(".crt").write_text(cert)
    stem.with_suffix(".key").write_text(key)
    return stem.with_suffix(".crt"), stem.with_suffix(".key")


def context(ca_file: str | Path, cert: tuple[Path, Path] | tuple[str, str] | None = None) -> ssl.SSLContext:
    """Trust ``ca_file``; present ``cert`` (certificate file, key file) when asked."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return ctx


class Rest:
    """httpx against one node's REST API (simulator CA, SNI = fqdn), with Basic or a client
    certificate; a new client (so a new handshake) per call unless ``keep``."""

    def __init__(self, sim: ClusterSimulator, *, cert: tuple[Path, Path] | None = None,
                 basic: str | None = "admin", node: int = 1) -> None:
        self.sim, self.cert, self.node = sim, cert, node
        self.auth = {"admin": (sim.admin_username, sim.admin_password),
                     "viewer": (sim.viewer_username, sim.viewer_password)}.get(basic or "")

    def __call__(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        base = f"https://{self.sim.node_addresses[self.node - 1]}:{self.sim.config.api_port}"
        if self.auth is not None and "headers" not in kwargs:
            kwargs.setdefault("auth", self.auth)
        with httpx.Client(verify=context(self.sim.ca_path, self.cert), timeout=10) as client:
            return client.request(method, base + path, extensions={"sni_hostname": FQDN}, **kwargs)
