"""The fault matrix: the simulator driven through every fault a rotation meets, and the end state
checked by independent handshakes (``conftest.handshake_fingerprint``, not the project's probe).

The promise under test: after a rotation, every endpoint serves one certificate and the record
names it; where that cannot be (a rollback that failed), the record says what each endpoint serves.
Pipeline-level faults share one simulator (faults cleared between cases); faults that need real
processes (SIGSTOP, SIGTERM, SIGKILL, Redis going away, a worker's environment) run their own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.clock import FakeClock
from support.cluster import handshake_fingerprint, start_simulator, write_inventory
from support.processes import ROOT, RedisServer, wait_for
from support.rotate import rotate_here

from rotation.adapters.clock import SYSTEM_CLOCK
from rotation.adapters.issuers.internal_ca import init_ca
from rotation.adapters.state.local import LocalState
from rotation.config import Inventory, load_inventory
from rotation.core import certs
from rotation.core.errors import Interrupted, StoreUnavailable
from rotation.core.model import ClusterState, Outcome, RotationRecord, Step
from rotation.simulator import ClusterSimulator
from rotation.usecases.context import ServiceContext
from rotation.usecases.rotate import interrupts
from rotation.usecases.rotate.run import RotationOptions

REST_LABEL = "{cert}@cluster GET /v1/cluster/certificates"


# --- independent view of the cluster --------------------------------------------------------
def endpoints(sim: ClusterSimulator, cert: str) -> list[tuple[str, str, int, str]]:
    """(record label, host, port, SNI) of every listener that presents ``cert``."""
    fqdn, cfg = sim.config.fqdn, sim.config
    ports = {"cm": cfg.cm_port, "api": cfg.api_port, "metrics_exporter": cfg.metrics_port}
    found = []
    for uid, address in enumerate(sim.node_addresses, start=1):
        if cert in ports:
            found.append((f"{cert}@node{uid} {address}:{ports[cert]}", address, ports[cert], fqdn))
        elif cert == "proxy":
            found += [(f"proxy@node{uid} {address}:{port}", address, port, f"redis-{port}.{fqdn}")
                      for port in (12000, 12001) if port == 12000 or uid == 1]
    return found


def served(sim: ClusterSimulator, cert: str) -> dict[str, str]:
    """What every endpoint serves, by fresh handshakes, plus the cluster's own copy."""
    view = {label: handshake_fingerprint(host, port, sni) for label, host, port, sni in endpoints(sim, cert)}
    leaf = certs.load_certificates(sim.cluster_cert_pem(cert), where="simulator")[0]
    view[REST_LABEL.format(cert=cert)] = certs.fingerprint(leaf)
    return view


def assert_one_certificate_named_by(record: RotationRecord, sim: ClusterSimulator, expected: str | None) -> None:
    """Every endpoint serves ``expected``, and the record says so endpoint by endpoint."""
    view = served(sim, record.cert_name)
    assert set(view.values()) == {expected}, (record.outcome, record.error)
    assert {label: pair.get("after") for label, pair in record.nodes.items()} == view


# --- pipeline-level faults on one shared simulator ------------------------------------------
@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ClusterSimulator, Path]]:
    base = tmp_path_factory.mktemp("matrix")
    sim = start_simulator(base)
    try:
        yield sim, write_inventory(base / "rotation.yaml", sim, init_ca(base / "ca", common_name="matrix CA"))
    finally:
        sim.stop()


@pytest.fixture
def sim(shared: tuple[ClusterSimulator, Path], state_dir: Path) -> Iterator[ClusterSimulator]:
    simulator = shared[0]
    yield simulator
    simulator.clear_faults()
    for uid in (1, 2, 3):
        simulator.node_down(uid, down=False)


@pytest.fixture
def inventory(shared: tuple[ClusterSimulator, Path]) -> Inventory:
    return load_inventory(shared[1])


Action = Callable[[ClusterSimulator], None]


@dataclass(frozen=True)
class Fault:
    cert: str
    outcome: Outcome
    ends_on: str  # "new" or "old": what every endpoint serves at the end
    arrange: Action = lambda sim: None
    # (step name, finished?) -> what happens to the cluster at that moment of the rotation
    during: dict[tuple[str, bool], Action] = field(default_factory=dict)
    error: str = ""
    deadline: float = 3.0
    steps: tuple[str, ...] = ()
    # the verification deadline runs out on a fake clock: no waiting, and the waits are counted
    fake_time: bool = False


def _then(*actions: Action) -> Action:
    def run(sim: ClusterSimulator) -> None:
        for action in actions:
            action(sim)

    return run


MATRIX = {
    "409 once, retried": Fault("proxy", Outcome.VERIFIED, "new", lambda s: s.fail_next(1, 409)),
    "409 on every attempt (applied to node 1 only)": Fault(
        "proxy", Outcome.ROLLED_BACK, "old", lambda s: s.fail_next(3, 409), error="409"),
    "5xx burst, retried": Fault("cm", Outcome.VERIFIED, "new", lambda s: s.fail_next(2, 500)),
    "5xx on push and rollback": Fault(
        "cm", Outcome.FAILED, "old", lambda s: s.fail_next(10, 503), error="cluster state old"),
    "node stale for a while": Fault("cm", Outcome.VERIFIED, "new", lambda s: s.stale(2, seconds=0.5)),
    "node stale for good": Fault(
        "cm", Outcome.ROLLED_BACK, "old", lambda s: s.stale(3, None, "cm"), error="node3", deadline=1.5,
        steps=("read", "issue", "validate", "push", "verify", "rollback", "verify-rollback"), fake_time=True),
    "REST API 503 after the push, node lagging for good": Fault(
        "metrics_exporter", Outcome.ROLLED_BACK, "old", lambda s: s.stale(3, None, "metrics_exporter"),
        during={("push", True): lambda s: s.fail_requests(10_000, 503, method="GET", path="/v1/cluster/certificates"),
                ("rollback", False): lambda s: s.clear_faults()},
        error="HTTP 503", deadline=1.5, fake_time=True),
    "REST API 503 after the push, node catching up": Fault(
        "metrics_exporter", Outcome.VERIFIED, "new", lambda s: s.stale(2, seconds=0.5),
        during={("push", True): lambda s: s.fail_requests(3, 503, method="GET", path="/v1/cluster/certificates")}),
    "PUT redirected (302)": Fault(
        "proxy", Outcome.REFUSED, "old",
        lambda s: s.fail_requests(1, 302, method="PUT", location="https://login.example.test/sso?next=api"),
        error="redirecting to https://login.example.test/sso?next=api"),
    "GET /v1/cluster redirected (302)": Fault(
        "cm", Outcome.REFUSED, "old",
        lambda s: s.fail_requests(1, 302, method="GET", path="/v1/cluster", location="/maintenance"),
        error="GET /v1/cluster: the REST API answered HTTP 302, redirecting to https://"),
    "slow REST API": Fault("metrics_exporter", Outcome.VERIFIED, "new", lambda s: s.slow(0.1)),
    "node down": Fault("cm", Outcome.REFUSED, "old", lambda s: s.node_down(2), error="node(s) 2"),
}


@pytest.mark.parametrize("case", list(MATRIX))
def test_fault_ends_with_one_certificate_served_and_named(sim: ClusterSimulator, inventory: Inventory,
                                                          case: str) -> None:
    fault = MATRIX[case]
    original = served(sim, fault.cert)[REST_LABEL.format(cert=fault.cert)]
    fault.arrange(sim)

    def progress(record: RotationRecord, step: Step) -> None:
        action = fault.during.get((step.name, step.finished_at is not None))
        if action is not None:
            action(sim)

    clock = FakeClock(datetime.now(UTC)) if fault.fake_time else None
    options = RotationOptions(poll_interval=0.1, push_backoff=0.05, progress=progress,
                              verify_deadline=timedelta(seconds=fault.deadline), clock=clock)
    (record,) = rotate_here(inventory, "sim", [fault.cert], options)
    assert record.outcome is fault.outcome, record.error
    if clock is not None:  # verification polled until its deadline, then gave up
        assert sum(clock.slept) >= fault.deadline - 1e-6 and clock.slept[:2] == [0.05, 0.1]  # verify backs off ...
        assert max(clock.slept) == 0.1  # ... up to the poll interval
    assert fault.error in (record.error or ""), record.error
    if fault.steps:
        assert tuple(s.name for s in record.steps) == fault.steps
    sim.clear_faults()
    for uid in (1, 2, 3):
        sim.node_down(uid, down=False)
    expected = record.new_fingerprint if fault.ends_on == "new" else original
    assert record.old_fingerprint in (None, original)
    if record.pushed:
        assert_one_certificate_named_by(record, sim, expected)
        assert record.cluster_state is (ClusterState.NEW if fault.ends_on == "new" else ClusterState.OLD)
    else:
        assert set(served(sim, fault.cert).values()) == {original}


class CatchUpClock(FakeClock):
    """Node 3 of ``sim`` serves the new certificate once verification has waited ``after`` times."""

    def __init__(self, sim: ClusterSimulator, after: int) -> None:
        super().__init__(datetime.now(UTC))
        self.sim, self.after = sim, after

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        if len(self.slept) == self.after:
            self.sim.stale(3, 0)  # switch now


@pytest.mark.parametrize("late_looks", [1, 6])
def test_verification_looks_again_after_50ms_and_backs_off(sim: ClusterSimulator, inventory: Inventory,
                                                           late_looks: int) -> None:
    sim.stale(3, None, "cm")  # node 3 lags until the clock has slept `late_looks` times
    clock = CatchUpClock(sim, late_looks)
    options = RotationOptions(poll_interval=0.5, push_backoff=0.05, verify_deadline=timedelta(seconds=30),
                              clock=clock)
    (record,) = rotate_here(inventory, "sim", ["cm"], options)
    assert record.outcome is Outcome.VERIFIED, record.error
    # a node one look late costs one 50 ms wait; later, the waits double up to the poll interval
    assert clock.slept == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5][:late_looks]
    sim.clear_faults()


def test_failed_rollback_records_each_endpoint_and_the_retry_restores_the_original(
    sim: ClusterSimulator, inventory: Inventory
) -> None:
    original = served(sim, "cm")[REST_LABEL.format(cert="cm")]
    sim.stale(3, None, "cm")  # node 3 never takes the new certificate: verification fails
    options = RotationOptions(poll_interval=0.1, push_backoff=0.05, verify_deadline=timedelta(seconds=1.5),
                              progress=lambda record, step: step.name == "rollback" and sim.fail_next(10, 500),
                              clock=FakeClock(datetime.now(UTC)))
    (failed,) = rotate_here(inventory, "sim", ["cm"], options)
    assert failed.outcome is Outcome.FAILED and failed.cluster_state is ClusterState.MIXED
    assert "rollback failed" in (failed.error or "") and "cluster state mixed" in (failed.error or "")
    view = served(sim, "cm")  # independent: nodes 1-2 and the REST copy new, node 3 the original
    assert {label: pair["after"] for label, pair in failed.nodes.items()} == view
    assert sorted(view.values()).count(original) == 1 and set(view.values()) == {original, failed.new_fingerprint}

    # The next attempt (a retry, or beat's next scan) restores the *original*, not the half-pushed one.
    sim.clear_faults()  # node 3 catches up: every endpoint now serves the half-pushed certificate
    sim.fail_next(1, 400)  # and RS refuses the retry's certificate
    (retry,) = rotate_here(inventory, "sim", ["cm"], RotationOptions(poll_interval=0.1, push_backoff=0.05))
    assert retry.old_fingerprint == original != failed.new_fingerprint
    assert "left this certificate unfinished" in retry.steps[0].detail
    assert retry.outcome is Outcome.ROLLED_BACK, retry.error
    assert_one_certificate_named_by(retry, sim, original)


def test_a_full_disk_after_the_push_still_verifies_and_names_each_endpoint(sim: ClusterSimulator, inventory: Inventory,
                                                                          state_dir: Path) -> None:
    """The local state cannot write its records any more (the disk is full: ENOSPC) right after the push: the
    rotation must still verify (or roll back) and say what every endpoint serves, not stop half-way."""
    history = state_dir / "history.jsonl"

    def disk_fills_up_after_the_push(record: RotationRecord, step: Step) -> None:
        if step.name == "push" and step.finished_at is not None:
            history.unlink()
            history.symlink_to("/dev/full")  # every write there fails with ENOSPC

    options = RotationOptions(poll_interval=0.1, push_backoff=0.05, progress=disk_fills_up_after_the_push)
    (record,) = rotate_here(inventory, "sim", ["cm"], options)
    assert history.is_symlink()  # the disk filled up after the push indeed
    assert record.outcome is Outcome.VERIFIED, record.error
    assert_one_certificate_named_by(record, sim, record.new_fingerprint)


class SigtermAtTheLastLook(FakeClock):
    """SIGTERM to this process while verification takes its last look: after that look's safe point,
    before the deadline ends it with a VerificationError."""

    def __init__(self, deadline: float) -> None:
        super().__init__(datetime.now(UTC))
        self.deadline, self.sent = deadline, False

    def monotonic(self) -> float:
        if not self.sent and sum(self.slept) >= self.deadline - 1e-6:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)  # noted by sigterm_unwinds' handler, raised at a safe point
        return super().monotonic()


def test_sigterm_during_the_last_verification_look_still_rolls_back(sim: ClusterSimulator,
                                                                    inventory: Inventory) -> None:
    """A SIGTERM that lands after verification's last safe point must not skip the rollback: the
    rollback runs, is verified and recorded, then the rotation unwinds as interrupted."""
    assert threading.current_thread() is threading.main_thread()  # else sigterm_unwinds does nothing
    original = served(sim, "cm")[REST_LABEL.format(cert="cm")]
    sim.stale(3, None, "cm")  # node 3 never takes the new certificate: verification fails at its deadline
    options = RotationOptions(poll_interval=0.1, push_backoff=0.05, verify_deadline=timedelta(seconds=1.5),
                              clock=SigtermAtTheLastLook(1.5))
    ctx = ServiceContext(inventory=lambda: inventory)
    with interrupts.sigterm_unwinds(), pytest.raises(Interrupted):
        rotate_here(inventory, "sim", ["cm"], options, ctx=ctx)
    (record,) = ctx.state.history("sim", "cm")
    assert record.outcome is Outcome.ROLLED_BACK, record.error
    assert [s.name for s in record.steps][-2:] == ["rollback", "verify-rollback"]
    sim.clear_faults()
    assert_one_certificate_named_by(record, sim, original)


# --- faults that need real processes --------------------------------------------------------
def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "workers.main", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _record_reaching(load: Callable[[], list[RotationRecord]], step: str) -> RotationRecord:
    return wait_for(lambda: next((r for r in load() if any(s.name == step for s in r.steps)), None), 30,
                    0.05, what=f"a rotation to reach {step}")


def test_sigterm_after_the_push_rolls_back_on_the_way_out(
    simulator: ClusterSimulator, inventory_path: Path, state_dir: Path
) -> None:
    original = simulator.served_fingerprint(1, "cm")
    simulator.stale(3, None, "cm")
    env = {**os.environ, "ROTATION_STORE": "local", "ROTATION_STATE_DIR": str(state_dir)}
    process = _cli("rotate", "sim", "cm", "--inline", "-c", str(inventory_path), "--verify-deadline", "60s", env=env)
    try:
        _record_reaching(lambda: LocalState(state_dir, SYSTEM_CLOCK).history("sim", "cm"), "verify")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 1, stderr
    assert "interrupted (SIGTERM)" in stderr
    (record,) = LocalState(state_dir, SYSTEM_CLOCK).history("sim", "cm")
    assert record.outcome is Outcome.ROLLED_BACK and "interrupted (SIGTERM)" in (record.error or "")
    assert_one_certificate_named_by(record, simulator, original)


def test_a_rotation_paused_past_its_lease_is_fenced_off(
    simulator: ClusterSimulator, service_env: dict[str, str], redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rotation A is SIGSTOPped mid-verify past its lease; B takes over and verifies; A resumes and
    must not roll B's certificate back to the original: it records `superseded` and pushes nothing."""
    monkeypatch.setenv("ROTATION_LOCK_LEASE", "1s")
    env = {**service_env, "ROTATION_LOCK_LEASE": "1s"}
    original = simulator.served_fingerprint(1, "cm")
    simulator.stale(3, None, "cm")
    ctx = ServiceContext()
    paused = _cli("rotate", "sim", "cm", "--inline", "--verify-deadline", "3s", "--json", env=env)
    try:
        a = _record_reaching(lambda: ctx.state.history("sim", "cm"), "verify")
        os.kill(paused.pid, signal.SIGSTOP)
        lock = f"rotation:lock:{simulator.node_addresses[0]}:{simulator.config.api_port}:cm"
        wait_for(lambda: redis_server.client().get(lock) is None, 10, 0.05, what="A's lease to run out")
        simulator.stale(3, seconds=0)  # node 3 catches up with A's certificate
        (b,) = rotate_here(load_inventory(service_env["ROTATION_CONFIG"]), "sim", ["cm"],
                             RotationOptions(poll_interval=0.1), ctx=ctx)
        assert b.outcome is Outcome.VERIFIED and b.old_fingerprint == original  # B restores A's original if need be
        pushes = len(simulator.received_update_bodies)
        os.kill(paused.pid, signal.SIGCONT)
        paused.communicate(timeout=60)
    finally:
        if paused.poll() is None:
            os.kill(paused.pid, signal.SIGCONT)
            paused.kill()
    assert paused.returncode == 1
    a = ctx.state.get(a.id)
    assert a.outcome is Outcome.SUPERSEDED, a.error
    assert "took the lock" in (a.error or "") and "which this rotation did not push" in (a.error or "")
    assert len(simulator.received_update_bodies) == pushes  # A pushed nothing after it lost the lease
    assert_one_certificate_named_by(a, simulator, b.new_fingerprint)
    assert_one_certificate_named_by(b, simulator, b.new_fingerprint)


def test_redis_going_away_after_the_push_loses_nothing(
    simulator: ClusterSimulator, service_env: dict[str, str], redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # the store's own write-back thread would race the look at the journal below on a slow machine: this
    # test is about the journal and the first read, the thread has tests of its own (test_redis_fault_sweep)
    monkeypatch.setattr("rotation.adapters.state.redis.JOURNAL_RETRY", 3600.0)
    simulator.stale(2, seconds=0.5, cert_name="metrics_exporter")  # verification takes a moment
    stopped = []

    def redis_dies_after_the_push(record: RotationRecord, step: Step) -> None:
        if step.name == "push" and step.finished_at is not None:
            redis_server.stop()
            stopped.append(record.id)

    ctx = ServiceContext()
    try:
        (record,) = rotate_here(load_inventory(service_env["ROTATION_CONFIG"]), "sim", ["metrics_exporter"],
                                  RotationOptions(poll_interval=0.1, progress=redis_dies_after_the_push), ctx=ctx)
    finally:
        redis_server.start()  # an empty Redis (no persistence): like a restart that lost everything
    assert stopped == [record.id] and record.outcome is Outcome.VERIFIED, record.error
    assert_one_certificate_named_by(record, simulator, record.new_fingerprint)
    assert list((Path(service_env["ROTATION_STATE_DIR"]) / "journal").glob("*.json"))  # kept locally
    (stored,) = ctx.state.history("sim", "metrics_exporter")  # the first read writes it back
    assert stored.to_dict() == record.to_dict()
    assert not list((Path(service_env["ROTATION_STATE_DIR"]) / "journal").glob("*.json"))


def test_redis_going_away_before_the_push_still_ends_the_saved_record(
    simulator: ClusterSimulator, service_env: dict[str, str], own_redis: RedisServer,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis goes away after the record was saved `in_progress`, before anything is pushed (the original
    pair cannot be kept): nothing is pushed, the command says the store is unreachable, and the record
    must still end (kept locally, written back) instead of staying `in_progress` once Redis returns."""
    monkeypatch.setenv("ROTATION_REDIS_URL", own_redis.url)
    seen: list[str] = []

    def redis_goes_away_while_issuing(record: RotationRecord, step: Step) -> None:
        if step.name == "issue" and step.finished_at is None:
            seen.append(record.id)
            own_redis.client().save()  # what Redis holds now survives its restart (as with persistence)
            own_redis.stop()

    ctx = ServiceContext()
    original = simulator.served_fingerprint(1, "cm")
    try:
        with pytest.raises(StoreUnavailable):
            rotate_here(load_inventory(service_env["ROTATION_CONFIG"]), "sim", ["cm"],
                        RotationOptions(poll_interval=0.1, progress=redis_goes_away_while_issuing), ctx=ctx)
    finally:
        own_redis.start()
    assert not simulator.received_update_bodies and simulator.served_fingerprint(1, "cm") == original
    record = ctx.state.get(seen[0])
    assert record is not None and record.outcome is Outcome.REFUSED, record
    assert "unreachable" in (record.error or "") and record.finished_at is not None


def test_a_verified_rotation_whose_original_could_not_be_forgotten_is_never_restored(
    simulator: ClusterSimulator, service_env: dict[str, str], own_redis: RedisServer,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """A is verified while Redis is away, so the original pair it kept cannot be forgotten; Redis returns
    with it (persistence). B, the next rotation, is refused by RS: nothing changed, so B must leave A's
    certificate served, never push A's original (an older certificate) over it."""
    monkeypatch.setenv("ROTATION_REDIS_URL", own_redis.url)
    inventory = load_inventory(service_env["ROTATION_CONFIG"])
    original = simulator.served_fingerprint(1, "cm")

    def redis_goes_away_after_the_push(record: RotationRecord, step: Step) -> None:
        if step.name == "push" and step.finished_at is not None:
            own_redis.client().save()  # what Redis holds now (the kept original) survives its restart
            own_redis.stop()

    ctx = ServiceContext()
    try:
        (a,) = rotate_here(inventory, "sim", ["cm"],
                           RotationOptions(poll_interval=0.1, progress=redis_goes_away_after_the_push), ctx=ctx)
    finally:
        own_redis.start()
    assert a.outcome is Outcome.VERIFIED and a.old_fingerprint == original, a.error
    assert ctx.state.get(a.id).outcome is Outcome.VERIFIED  # written back from the journal

    lock = f"rotation:lock:{simulator.node_addresses[0]}:{simulator.config.api_port}:cm"
    wait_for(lambda: own_redis.client().get(lock) is None, 30, 0.05, what="A's lease, restored with Redis, to lapse")
    simulator.fail_next(1, 400)  # RS refuses B's certificate: nothing changes
    pushes = len(simulator.received_update_bodies)
    (b,) = rotate_here(inventory, "sim", ["cm"], RotationOptions(poll_interval=0.1, push_backoff=0.05), ctx=ctx)
    assert b.outcome is Outcome.REFUSED and b.old_fingerprint == a.new_fingerprint, (b.outcome, b.error)
    assert len(simulator.received_update_bodies) == pushes + 1  # B's refused push only
    assert_one_certificate_named_by(b, simulator, a.new_fingerprint)


def _killed_after_push(simulator: ClusterSimulator, service_env: dict[str, str], redis_server: RedisServer,
                       ctx: ServiceContext) -> RotationRecord:
    """`rotate sim cm --inline` killed (SIGKILL) once it verifies, i.e. after its push; returns its record once
    the dead process's lease has lapsed."""
    dying = _cli("rotate", "sim", "cm", "--inline", "--verify-deadline", "60s", "--json", env=service_env)
    try:
        killed = _record_reaching(lambda: ctx.state.history("sim", "cm"), "verify")
    finally:
        dying.kill()
        dying.communicate(timeout=30)
    lock = f"rotation:lock:{simulator.node_addresses[0]}:{simulator.config.api_port}:cm"
    wait_for(lambda: redis_server.client().get(lock) is None, 30, 0.05, what="the dead process's lease to lapse")
    return killed


def test_a_resumed_rotation_that_cannot_read_its_kept_original_still_records_each_endpoint(
    simulator: ClusterSimulator, service_env: dict[str, str], redis_server: RedisServer
) -> None:
    """A process dies after its push (SIGKILL); its rotation is resumed under the same id, and Redis goes away
    just as the resume reads the kept original pair. The cluster is mixed: the resume cannot roll back,
    so it must probe and record what every endpoint serves (not end as a bare `failed`)."""
    simulator.stale(3, None, "cm")  # node 3 never takes the new certificate: the cluster stays mixed
    ctx = ServiceContext()
    killed = _killed_after_push(simulator, service_env, redis_server, ctx)

    def redis_goes_away_at_the_resume(record: RotationRecord, step: Step) -> None:
        if step.name == "resume" and step.finished_at is None:
            redis_server.stop()

    try:
        (record,) = rotate_here(load_inventory(service_env["ROTATION_CONFIG"]), "sim", ["cm"],
                                RotationOptions(rotation_id=killed.id, poll_interval=0.1,
                                                progress=redis_goes_away_at_the_resume), ctx=ctx)
    finally:
        redis_server.start()
    assert record.id == killed.id and "resume" in [s.name for s in record.steps], record
    assert record.outcome is Outcome.FAILED and record.cluster_state is ClusterState.MIXED, record.error
    assert "final-probe" in [s.name for s in record.steps]
    sim_view = served(simulator, "cm")
    assert {label: pair.get("after") for label, pair in record.nodes.items()} == sim_view
    assert set(sim_view.values()) == {killed.old_fingerprint, killed.new_fingerprint}


def test_a_rotation_that_takes_over_from_a_killed_one_ends_its_record(
    simulator: ClusterSimulator, service_env: dict[str, str], redis_server: RedisServer
) -> None:
    """`rotation rotate --inline` is killed (SIGKILL) after its push: nothing will ever resume it. The next
    rotation of the certificate takes over (restoring its original if it fails): the killed rotation's
    record must then end, instead of showing `in_progress` for good."""
    simulator.stale(3, None, "cm")
    ctx = ServiceContext()
    killed = _killed_after_push(simulator, service_env, redis_server, ctx)
    simulator.clear_faults()
    (taking_over,) = rotate_here(load_inventory(service_env["ROTATION_CONFIG"]), "sim", ["cm"],
                                 RotationOptions(poll_interval=0.1), ctx=ctx)
    assert taking_over.outcome is Outcome.VERIFIED and taking_over.old_fingerprint == killed.old_fingerprint
    ended = ctx.state.get(killed.id)
    assert ended is not None and ended.outcome is Outcome.FAILED and ended.finished_at is not None, ended
    assert f"rotation {taking_over.id} took over" in (ended.error or "")
    assert_one_certificate_named_by(taking_over, simulator, taking_over.new_fingerprint)


def test_worker_killed_mid_rotation_is_resumed_by_the_redelivered_task(
    simulator: ClusterSimulator, service_env: dict[str, str], start_service, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.queue import CeleryRotationQueue

    # A short visibility timeout: the dead worker's task comes back after 6 s instead of 18.
    fast = {"ROTATION_TASK_TIME_LIMIT": "5s", "ROTATION_VISIBILITY_TIMEOUT": "6s"}
    for name, value in fast.items():
        monkeypatch.setenv(name, value)
    env = {**service_env, **fast}
    simulator.stale(3, seconds=None, cert_name="cm")  # verification will wait on node 3
    worker = start_service("worker", env=env)
    ctx = ServiceContext()
    rotation_id = CeleryRotationQueue(ctx).submit("sim", "cm")
    _record_reaching(lambda: [r for r in [ctx.state.get(rotation_id)] if r], "verify")
    worker.kill()  # SIGKILL after the push, before verification finished
    assert ctx.state.get(rotation_id).outcome is Outcome.IN_PROGRESS
    simulator.clear_faults()  # node 3 catches up meanwhile
    start_service("worker", env=env)  # the unacked task comes back after the visibility timeout
    record = wait_for(lambda: (r := ctx.state.get(rotation_id)) and r.outcome is not Outcome.IN_PROGRESS and r,
                      60, 0.5, what="the redelivered rotation to end")
    assert "resume" in [s.name for s in record.steps]
    assert record.outcome is Outcome.VERIFIED, record.error
    assert_one_certificate_named_by(record, simulator, record.new_fingerprint)


def test_a_worker_that_cannot_do_the_rotation_ends_its_record(
    simulator: ClusterSimulator, service_env: dict[str, str], start_service, tmp_path: Path,
    ca_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's environment lacks the cluster's password: the record ends `failed` with the reason,
    its pending marker is released and it is counted; `rotation rotate -c FILE` (queued) exits 1 at once.
    A rotation asked for with another inventory than the worker's is refused the same way."""
    from typer.testing import CliRunner

    from workers.main import app

    no_password = write_inventory(tmp_path / "worker.yaml", simulator, ca_files,
                                  cluster_overrides={"password_file": None, "password_env": "SIM_PW_NOT_SET"})
    other = write_inventory(tmp_path / "other.yaml", simulator, ca_files, cluster_overrides={"verify_deadline": "7s"})
    start_service("worker", env={**service_env, "ROTATION_CONFIG": str(no_password)})
    monkeypatch.delenv("ROTATION_CONFIG")  # only -c names the inventory now
    runner = CliRunner()

    result = runner.invoke(app, ["rotate", "sim", "cm", "-c", str(no_password), "--json"])
    assert result.exit_code == 1, result.output
    (record,) = json.loads(result.stdout)
    assert record["outcome"] == "failed" and "SIM_PW_NOT_SET is not set" in record["error"]
    ctx = ServiceContext()
    assert ctx.state.pending() == {}
    assert ctx.state.stats().get("count|sim|cm|failed") == "1"

    result = runner.invoke(app, ["rotate", "sim", "proxy", "-c", str(other), "--json"])
    assert result.exit_code == 1, result.output
    (record,) = json.loads(result.stdout)
    assert "is not the one the rotation was requested with" in record["error"] and str(no_password) in record["error"]
    assert not simulator.received_update_bodies
