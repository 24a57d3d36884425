"""Certificate login on a simulated cluster, seen from the tool: the client CA as an issuer's files, an
inventory that logs in with the certificate (and manages it), and an independent login per node."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import yaml

from rotation.simulator import ClusterSimulator
from rotation.simulator.tls import CertificateAuthority, _key_pem
from support.cluster import write_inventory
from support.rest import FQDN, context

SUBJECT = "CN=rotation,OU=ops,O=rotation"


def ca_files(ca: CertificateAuthority, directory: Path) -> tuple[Path, Path]:
    """A CA's certificate and key as the files an internal_ca issuer reads (key 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "ca.pem", directory / "ca-key.pem"
    cert.write_text(ca.pem)
    key.write_text(_key_pem(ca.key))
    os.chmod(key, 0o600)
    return cert, key


def managed_inventory(path: Path, sim: ClusterSimulator, ca: tuple[Path, Path], client_ca: tuple[Path, Path],
                      **rest_client: Any) -> Path:
    """Certificate login only, ``rest_client`` managed with the ``clientca`` issuer."""
    write_inventory(path, sim, ca, login="certificate")
    data = yaml.safe_load(path.read_text())
    data["issuers"]["clientca"] = {"type": "internal_ca", "ca_cert": str(client_ca[0]),
                                   "ca_key_file": str(client_ca[1]), "validity": "90d"}  # beyond renew_before
    data["clusters"]["sim"]["rest_client"] = {"issuer": "clientca", "subject": SUBJECT, **rest_client}
    path.write_text(yaml.safe_dump(data))
    return path


def logs_in(sim: ClusterSimulator, node: int, cert_file: Path, key_file: Path) -> bool:
    """Does this certificate, alone, log in on node ``node`` (a new handshake)? False when refused."""
    base = f"https://{sim.node_addresses[node - 1]}:{sim.config.api_port}"
    try:
        with httpx.Client(verify=context(sim.ca_path, (cert_file, key_file)), timeout=10) as client:
            return client.get(base + "/v1/nodes", extensions={"sni_hostname": FQDN}).status_code == 200
    except httpx.TransportError:  # refused in the handshake (a CA outside mtls_trusted_ca)
        return False
