"""Shared fixtures: a real simulated cluster on its own 127.x range, an internal CA, an inventory, the
service's Redis and processes. Helpers live in ``tests/support``; a test is marked ``unit`` or
``integration`` by its folder."""

from __future__ import annotations

import gc
import os
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cluster import free_loopback_base, start_simulator, write_inventory
from support.hostile import HostileServer
from support.processes import RedisServer, ServiceProcess, close_clients

from rotation.adapters.issuers.internal_ca import init_ca
from rotation.config import Inventory, load_inventory
from rotation.simulator import ClusterSimulator

# Fixtures that only some tests use, kept with their helpers.
pytest_plugins = ["support.acme", "support.chat", "support.fleet"]


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist's workers get COLUMNS=80: rich's consoles, made when the CLI is imported, would keep
    # that width for good, and a test's own COLUMNS (CliRunner env) would no longer reach them.
    os.environ.pop("COLUMNS", None)


@pytest.fixture(scope="session", autouse=True)
def _no_default_redis(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test may reach the machine's own Redis (the default URL's 6379): unless a test gives its store a
    Redis of its own (ROTATION_STORE=redis and ROTATION_REDIS_URL, as the fixtures below do), its state is a
    local folder of this test process, here and in the processes it starts."""
    os.environ.pop("ROTATION_REDIS_URL", None)
    os.environ["ROTATION_STORE"] = "local"
    os.environ["ROTATION_STATE_DIR"] = str(tmp_path_factory.mktemp("default-state"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``unit``: fast and pure (tests/unit); ``integration``: real processes (tests/integration)."""
    for item in items:
        kind = "unit" if "unit" in item.path.parts else "integration"
        item.add_marker(getattr(pytest.mark, kind))

@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "state"
    monkeypatch.setenv("ROTATION_STATE_DIR", str(directory))
    monkeypatch.setenv("ROTATION_STORE", "local")  # the pipeline tests need no Redis
    return directory


@pytest.fixture
def ca_files(tmp_path: Path) -> tuple[Path, Path]:
    return init_ca(tmp_path / "ca", common_name="test internal CA")


@pytest.fixture
def hostile(ca_files: tuple[Path, Path], tmp_path: Path) -> Iterator[HostileServer]:
    """A server on a loopback address of its own that answers whatever a test scripts (tests/support/hostile.py)."""
    server = HostileServer(free_loopback_base(), ca_files, tmp_path)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[ClusterSimulator]:
    """A simulated RS 8.0.2 cluster, the first release with per-database certificates (a test file may
    define its own ``sim``)."""
    simulator = start_simulator(tmp_path, version="8.0.2-17")
    yield simulator
    simulator.stop()


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[ClusterSimulator]:
    sim = start_simulator(tmp_path)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def inventory_path(tmp_path: Path, simulator: ClusterSimulator, ca_files: tuple[Path, Path]) -> Path:
    return write_inventory(tmp_path / "rotation.yaml", simulator, ca_files)


@pytest.fixture
def inventory(inventory_path: Path) -> Inventory:
    return load_inventory(inventory_path)


# --- the service: Redis, worker, beat ------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own (not the session's): the test may stop and start it."""
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def redis_store(redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RedisServer:
    """This test process keeps its state (records, locks, secrets) in the session's Redis, emptied first."""
    from rotation.adapters.secrets import SecretBox

    redis_server.client().flushall()
    monkeypatch.setenv("ROTATION_STORE", "redis")
    monkeypatch.setenv("ROTATION_REDIS_URL", redis_server.url)
    monkeypatch.setenv("ROTATION_SECRET_KEY", SecretBox.generate_key())
    monkeypatch.setenv("ROTATION_STATE_DIR", str(tmp_path / "state"))
    return redis_server


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
        # SIGKILL, not a clean stop (Celery's warm shutdown costs ~1 s a process): what the test asserts is
        # done, and the next test empties the session's Redis of whatever they leave (service_env). A test
        # of the clean stop calls ``stop()`` itself.
        for process in started:
            process.kill()


@pytest.fixture(autouse=True)
def _collected_after_each_test() -> Iterator[None]:
    """A socket or transport a test leaves open fails that test, not whichever later test the garbage
    collector happens to run in (warnings are errors here: an unclosed socket is a ResourceWarning)."""
    yield
    gc.collect()
    gc.freeze()  # what is left is kept by the session (modules, fixtures): not scanned again after each test


@pytest.fixture(autouse=True)
def _contexts_closed() -> Iterator[None]:
    """Every ServiceContext the test (or a function fixture) made is closed at its end, as a command's is: a
    context left to the garbage collector holds Redis sockets in reference cycles, whose finalizers may run
    before redis-py closes them (an unclosed-socket warning, failing the test about once in four when busy).
    Set up after ``_collected_after_each_test``, so torn down before its collection; a module fixture's
    context (made before this one is set up) is left to its fixture."""
    from rotation.usecases.context import ServiceContext

    made: list[weakref.ref[ServiceContext]] = []
    init = ServiceContext.__init__

    def tracked(self: ServiceContext, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)  # type: ignore[arg-type]
        made.append(weakref.ref(self))

    ServiceContext.__init__ = tracked  # type: ignore[method-assign]
    try:
        yield
    finally:
        ServiceContext.__init__ = init  # type: ignore[method-assign]
        for ref in made:
            if (ctx := ref()) is not None:
                ctx.close()
        close_clients()  # the tests' own Redis clients (RedisServer.client)
