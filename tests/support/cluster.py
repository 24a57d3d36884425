"""Simulated clusters for the tests: each on its own 127.x range (per xdist worker), an inventory for it,
and an independent look at what a node serves."""

from __future__ import annotations

import hashlib
import os
import random
import socket
import ssl
from datetime import timedelta
from pathlib import Path

import yaml

from rotation.simulator import ClusterSimulator, SimulatorConfig
from rotation.simulator.server import PortInUseError

_used_ranges: set[tuple[int, int]] = set()


def _first_octets() -> range:
    """This pytest-xdist worker's share of 127.100-250.x.x, so parallel workers never meet."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    size = 151 // max(1, workers)
    return range(100 + worker * size, 100 + (worker + 1) * size)


def free_loopback_base() -> str:
    """A 127.A.B.1 base no other test in this run uses, so real RS ports never collide."""
    octets = _first_octets()
    while True:
        pair = (random.choice(octets), random.randint(1, 250))
        if pair not in _used_ranges:
            _used_ranges.add(pair)
            return f"127.{pair[0]}.{pair[1]}.1"


def handshake_fingerprint(host: str, port: int, sni: str) -> str:
    """An independent check, not the project's probe: one plain ssl handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=5) as raw, context.wrap_socket(
        raw, server_hostname=sni
    ) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der
    return hashlib.sha256(der).hexdigest()


def start_simulator(tmp_path: Path, **overrides: object) -> ClusterSimulator:
    settings: dict[str, object] = {
        "fqdn": "cluster.test.local",
        "nodes": 3,
        "first_address": free_loopback_base(),
        "expires_in": timedelta(days=5),
        "state_dir": tmp_path / f"sim-{random.randint(0, 1 << 30)}",
    }
    settings.update(overrides)
    # Another program on this machine (a second suite, a demo) may hold a port of a random range:
    # take a fresh range rather than fail, unless the test chose the address itself.
    attempts = 1 if "first_address" in overrides else 4
    for attempt in range(attempts):
        sim = ClusterSimulator(SimulatorConfig(**settings))  # type: ignore[arg-type]
        try:
            sim.start()
        except PortInUseError:
            sim.stop()
            if attempt == attempts - 1:
                raise
            settings["first_address"] = free_loopback_base()
            continue
        return sim
    raise AssertionError("unreachable")


def write_inventory(
    path: Path,
    sim: ClusterSimulator,
    ca_files: tuple[Path, Path],
    *,
    name: str = "sim",
    cluster_overrides: dict | None = None,
    login: str = "basic",
) -> Path:
    entry = sim.inventory_entry(name, login=login)
    entry.update({"issuer": "internal", "verify_deadline": "5s", "handshake_timeout": "2s"})
    entry.update(cluster_overrides or {})
    data = {
        "renew_before": "30d",
        "issuers": {"internal": {"type": "internal_ca", "ca_cert": str(ca_files[0]),
                                 "ca_key_file": str(ca_files[1]), "validity": "90d"}},
        "clusters": {name: entry},
    }
    path.write_text(yaml.safe_dump(data))
    return path
