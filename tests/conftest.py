"""Shared fixtures: a real simulated cluster on its own 127.x range, an internal CA, an inventory."""

from __future__ import annotations

import hashlib
import os
import random
import socket
import ssl
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from rotation.adapters.issuers.internal_ca import init_ca
from rotation.config import Inventory, load_inventory
from rotation.simulator import ClusterSimulator, SimulatorConfig

_used_ranges: set[tuple[int, int]] = set()


def free_loopback_base() -> str:
    """A 127.A.B.1 base no other test in this run uses, so real RS ports never collide."""
    while True:
        pair = (random.randint(100, 250), random.randint(1, 250))
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


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "state"
    monkeypatch.setenv("ROTATION_STATE_DIR", str(directory))
    monkeypatch.setenv("ROTATION_STORE", "local")  # the pipeline tests need no Redis
    return directory


@pytest.fixture
def ca_files(tmp_path: Path) -> tuple[Path, Path]:
    return init_ca(tmp_path / "ca", common_name="test internal CA")


def start_simulator(tmp_path: Path, **overrides: object) -> ClusterSimulator:
    settings: dict[str, object] = {
        "fqdn": "cluster.test.local",
        "nodes": 3,
        "first_address": free_loopback_base(),
        "expires_in": timedelta(days=5),
        "state_dir": tmp_path / f"sim-{random.randint(0, 1 << 30)}",
    }
    settings.update(overrides)
    sim = ClusterSimulator(SimulatorConfig(**settings))  # type: ignore[arg-type]
    sim.start()
    return sim


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[ClusterSimulator]:
    sim = start_simulator(tmp_path)
    try:
        yield sim
    finally:
        sim.stop()


def write_inventory(
    path: Path,
    sim: ClusterSimulator,
    ca_files: tuple[Path, Path],
    *,
    name: str = "sim",
    cluster_overrides: dict | None = None,
) -> Path:
    entry = sim.inventory_entry(name)
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


@pytest.fixture
def inventory_path(tmp_path: Path, simulator: ClusterSimulator, ca_files: tuple[Path, Path]) -> Path:
    return write_inventory(tmp_path / "rotation.yaml", simulator, ca_files)


@pytest.fixture
def inventory(inventory_path: Path) -> Inventory:
    return load_inventory(inventory_path)


# --- the service: Redis, worker, beat ------------------------------------------------------
from processes import RedisServer, ServiceProcess  # noqa: E402


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def service_env(
    redis_server: RedisServer, inventory_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Environment of the service processes; also applied to this test process."""
    from rotation.adapters.secrets import SecretBox

    redis_server.client().flushall()
    env = {
        "ROTATION_REDIS_URL": redis_server.url,
        "ROTATION_STORE": "redis",
        "ROTATION_CONFIG": str(inventory_path),
        "ROTATION_STATE_DIR": str(tmp_path / "state"),
        "ROTATION_SECRET_KEY": SecretBox.generate_key(),
        "ROTATION_SCAN_INTERVAL": "2s",
        "ROTATION_JITTER": "0.5s",
        "ROTATION_BACKOFF_BASE": "60s",
        "ROTATION_LOCK_LEASE": "3s",
        "ROTATION_TASK_TIME_LIMIT": "15s",
        "ROTATION_VISIBILITY_TIMEOUT": "18s",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, **env}


@pytest.fixture
def start_service(service_env: dict[str, str], tmp_path: Path) -> Iterator:
    """Start `rotation worker` / `rotation beat` subprocesses; all are stopped at teardown."""
    started: list[ServiceProcess] = []

    def start(kind: str, *args: str, env: dict[str, str] | None = None) -> ServiceProcess:
        extra = ["--log-format", "json"]
        if kind == "beat":
            extra += ["--schedule-file", str(tmp_path / f"beat-{len(started)}.db")]
        process = ServiceProcess([kind, *args, *extra], env or service_env,
                                 tmp_path / f"{kind}-{len(started)}.log").start()
        started.append(process)
        process.wait_ready("ready" if kind == "worker" else "beat: Starting")
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop()
