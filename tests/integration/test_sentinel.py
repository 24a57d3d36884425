"""ROTATION_REDIS_URL through Redis Sentinel: real `redis-server --sentinel` processes, a master and a
replica, the real worker and beat, the simulator; a forced failover while the service scans and rotates.
The service ends with every due certificate rotated once and verified, nothing left in progress, the
nodes serving what the records say, and beat and the workers on the new master."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.cluster import free_loopback_base, handshake_fingerprint, start_simulator
from support.processes import ServiceProcess, wait_for
from support.sentinel import SentinelSet

from rotation.adapters.state.redis_client import connect, connect_async
from rotation.config import ServiceSettings
from rotation.core.model import CertName, Outcome
from rotation.simulator import ClusterSimulator
from rotation.usecases.context import ServiceContext

FQDN = "cluster.test.local"
ALL = {str(c) for c in CertName}


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[ClusterSimulator]:
    """Slow REST answers: scans and rotations span the failover."""
    sim = start_simulator(tmp_path, api_latency=0.1)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    deployment = SentinelSet(tmp_path / "sentinel")
    try:
        yield deployment.start()
    finally:
        deployment.stop()


def test_the_clients_follow_the_master_across_a_failover(sentinels: SentinelSet) -> None:
    client = connect(sentinels.url)

    async def async_set(key: str, value: str) -> None:  # the webhook's client, in its own loop each time
        aclient = connect_async(sentinels.url)
        await aclient.set(key, value)
        await aclient.aclose()

    client.set("before", "1")
    asyncio.run(async_set("async before", "1"))
    new_master = sentinels.failover()
    client.set("after", "2")  # the old master refuses (READONLY): the client asks the sentinels again
    asyncio.run(async_set("async after", "2"))
    assert sentinels.node(new_master).mget("before", "after", "async before", "async after") == ["1", "2", "1", "2"]
    assert client.redacted_url == sentinels.url  # type: ignore[attr-defined]  # no password: shown as it is


def test_a_failover_while_the_service_scans_and_rotates(
        sentinels: SentinelSet, simulator: ClusterSimulator, service_env: dict[str, str],
        start_service: Callable[..., ServiceProcess], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTATION_REDIS_URL", sentinels.url)
    # The tasks a worker had fetched from the old master come back after the visibility timeout: a short
    # one (above a rotation's ~1 s here, time limit below it as the service requires) ends the test sooner.
    env = {**service_env, "ROTATION_REDIS_URL": sentinels.url, "ROTATION_BEAT_LEASE": "3s",
           "ROTATION_TASK_TIME_LIMIT": "8s", "ROTATION_VISIBILITY_TIMEOUT": "9s"}
    start_service("worker", "--concurrency", "4", env=env)
    beat = start_service("beat", env=env)
    ctx = ServiceContext()
    # The failover below happens while a rotation runs (and the scans that queued it).
    wait_for(lambda: [r for r in ctx.state.history("sim", limit=100) if r.finished_at is None], 60, 0.05,
             what="a rotation in progress")
    old_master = sentinels.master()
    new_master = sentinels.failover()  # while the scan's rotations run

    def verified() -> dict[str, str]:
        return {r.cert_name: r.new_fingerprint or "" for r in ctx.state.history("sim", limit=100)
                if r.outcome is Outcome.VERIFIED}

    done = wait_for(lambda: (v := verified()) and set(v) == ALL and v, 120, 0.5,
                    what="all five certificates rotated across the failover")
    records = ctx.state.history("sim", limit=100)
    assert all(r.finished_at is not None for r in records), [(r.cert_name, r.outcome) for r in records]
    assert max(Counter(r.cert_name for r in records if r.outcome is Outcome.VERIFIED).values()) == 1
    for address in simulator.node_addresses:  # the nodes serve what the records say
        assert handshake_fingerprint(address, simulator.config.cm_port, FQDN) == done["cm"]
        assert handshake_fingerprint(address, 12000, f"redis-12000.{FQDN}") == done["proxy"]
    # Everything lives on the new master; the old one follows it; one beat holds the schedule there.
    assert sentinels.node(new_master).exists("rotation:scan:sim", "rotation:beat") == 2
    assert sentinels.node(old_master).info("replication")["role"] == "slave"
    assert "standing by" not in beat.log()



def test_a_sentinel_that_never_answers_is_a_timeout_for_the_result_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    # Celery's Redis result backend gives the sentinels its transport options' sentinel_kwargs ({} when not
    # set): no socket timeout at all, so a sentinel that accepts and never answers held a result for good.
    from workers import celery_app

    monkeypatch.setattr(celery_app, "SOCKET_TIMEOUT", 0.1)  # nothing ever answers: any timeout ends it
    mute = socket.create_server((free_loopback_base(), 0))  # accepts (the backlog), never reads or answers
    host, port = mute.getsockname()[:2]
    app = celery_app.make_celery(ServiceSettings(redis_url=f"redis+sentinel://{host}:{port}/mymaster/0"))
    outcome: list[BaseException] = []

    def read_a_result() -> None:
        try:
            app.backend.client.get("celery-task-meta-some-task")
        except Exception as exc:  # noqa: BLE001 - what ended it is asserted below
            outcome.append(exc)

    reader = threading.Thread(target=read_a_result, daemon=True)
    try:
        reader.start()
        reader.join(20)
        assert outcome, "still waiting for the sentinel"
        assert "No master found" in str(outcome[0]), outcome
    finally:
        mute.close()
