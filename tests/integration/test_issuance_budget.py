"""A fleet-wide issuance budget per CA account, shared through the service's Redis (``core.budget``).

A CA's rate limits count per ACME account (Let's Encrypt: 300 new orders per account per 3 hours). Every
rotation asked its issuer on its own: a scan that found hundreds of certificates due fired hundreds of orders,
and when the CA answered rateLimited only that one certificate backed off while every other rotation still
asked, was refused too, and counted a failure.

Real Redis (the session's), the simulator, the injected clock; the CA's 429 from a real HTTP server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from support.acme import TSIG_NAME, ZONE, FakeCA, NamedServer, PebbleServer
from support.clock import FakeClock
from support.cluster import write_inventory
from support.processes import RedisServer

from rotation.adapters.metrics import registry_for
from rotation.adapters.state.local import LocalState
from rotation.adapters.state.redis import RedisState
from rotation.adapters.state.redis_client import connect as open_redis
from rotation.cli.rotate import exit_code_for
from rotation.config import Inventory, load_inventory
from rotation.core.budget import RECHECK_MAX, IssuanceBudget
from rotation.core.errors import BudgetSpent, ConfigError, RotationInProgress
from rotation.core.model import Outcome, new_rotation_id
from rotation.simulator import ClusterSimulator
from rotation.usecases.context import ServiceContext
from rotation.usecases.rotate.record import rotate_and_record
from rotation.usecases.rotate.run import RotationOptions
from rotation.usecases.scan import scan_and_queue
from rotation.usecases.status import service_status

HOUR = timedelta(hours=1)


def _budget(orders: int | None = 3, name: str = "le") -> IssuanceBudget:
    return IssuanceBudget(name, "acme\nhttps://ca.example/dir\nops@example.com", "https://ca.example/dir", orders,
                          HOUR if orders else timedelta(0))


@pytest.fixture(params=["redis", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisState | LocalState]:
    clock = FakeClock()
    if request.param == "local":
        yield LocalState(tmp_path / "state", clock)
        return
    server: RedisServer = request.getfixturevalue("redis_store")
    client = open_redis(server.url)
    try:
        yield RedisState(client, clock)
    finally:
        client.close()


def test_the_budget_refuses_the_order_past_n_in_a_window_and_allows_it_after(store: RedisState | LocalState) -> None:
    # microseconds: a window's edge kept to 14 digits (Lua's tostring) moved by a fraction and kept the order
    budget, start = _budget(3), datetime(2026, 1, 1, microsecond=123443, tzinfo=UTC)
    taken = [store.take_order(budget, f"r{i}", start + timedelta(seconds=10 * i)) for i in range(3)]
    assert [use.taken for use in taken] == [True] * 3 and [use.left for use in taken] == [2, 1, 0]

    refused = store.take_order(budget, "r3", start + timedelta(seconds=30))
    assert not refused.taken and refused.used == 3
    assert refused.blocked_until(start + timedelta(seconds=30)) == start + HOUR  # when the first order leaves
    error = refused.refusal(start + timedelta(seconds=30))
    assert isinstance(error, BudgetSpent) and error.retryable and error.until == start + HOUR
    assert error.retry_after == RECHECK_MAX.total_seconds()  # a queued rotation looks again, at most this late
    assert "issuer le's budget is spent until 2026-01-01 01:00:00Z (3 orders per 1h)" in error.message

    assert not store.take_order(budget, "r3", start + HOUR - timedelta(seconds=1)).taken  # still inside
    again = store.take_order(budget, "r3", start + HOUR)  # the first order left the window
    assert again.taken and again.used == 3 and again.next_free == start + timedelta(seconds=10) + HOUR
    assert store.budget_use(budget, start + HOUR).left == 0  # a read counts nothing
    assert store.budget_use(budget, start + 2 * HOUR).left == 3


def test_the_cas_pause_holds_every_order_of_the_issuer_until_it_ends(store: RedisState | LocalState) -> None:
    budget, start = _budget(None), datetime(2026, 1, 1, tzinfo=UTC)  # budget off: the CA's pause still holds
    store.pause_issuer(budget, start + timedelta(seconds=120), "too many new orders")
    store.pause_issuer(budget, start + timedelta(seconds=60), "an earlier answer")  # never shortens it
    refused = store.take_order(budget, "r1", start + timedelta(seconds=119))
    assert not refused.taken and refused.paused_until == start + timedelta(seconds=120)
    message = refused.refusal(start).message
    assert "issuer le is paused until 2026-01-01 00:02:00Z: the CA answered rateLimited (too many new orders)" \
        in message
    assert store.take_order(budget, "r1", start + timedelta(seconds=120)).taken
    (listed,) = store.issuer_budgets(start)
    assert listed.issuer == "le" and listed.shown == "https://ca.example/dir" and listed.orders is None


def test_two_workers_share_one_budget(redis_store: RedisServer) -> None:
    """Two stores (two workers' clients) on one Redis, taking at once from threads: exactly N orders."""
    clients = [open_redis(redis_store.url) for _ in range(2)]
    try:
        workers = [RedisState(client, FakeClock()) for client in clients]
        budget, now = _budget(5), datetime(2026, 1, 1, tzinfo=UTC)
        results: list[bool] = []
        barrier = threading.Barrier(12)

        def take(worker: RedisState, order: str) -> None:
            barrier.wait()
            results.append(worker.take_order(budget, order, now).taken)

        threads = [threading.Thread(target=take, args=(workers[i % 2], f"r{i}")) for i in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == [False] * 7 + [True] * 5
        assert workers[0].budget_use(budget, now).left == workers[1].budget_use(budget, now).left == 0
        workers[0].pause_issuer(budget, now + 2 * HOUR, "rateLimited")  # one worker's 429 holds the other
        assert not workers[1].take_order(budget, "late", now + HOUR + timedelta(seconds=1)).taken
    finally:
        for client in clients:
            client.close()


# --- the inventory ----------------------------------------------------------------------


def _issuers(tmp_path: Path, issuers: dict) -> Inventory:
    path = tmp_path / "issuers.yaml"
    path.write_text(yaml.safe_dump({"issuers": issuers, "clusters": {}}))
    return load_inventory(path)


def _acme(directory: str, **extra: object) -> dict:
    return {"type": "acme", "directory": directory, "challenge": "http-01", **extra}


LE = "https://acme-v02.api.letsencrypt.org/directory"


def test_budgets_are_keyed_by_the_ca_account_with_a_default_for_lets_encrypt_only(
        tmp_path: Path, ca_files: tuple[Path, Path]) -> None:
    inventory = _issuers(tmp_path, {
        "le": _acme(LE, email="ops@example.com"), "le_again": _acme(LE, email="ops@example.com"),
        "le_other": _acme(LE, email="other@example.com"), "le_off": _acme(LE, budget=False),
        "private": _acme("https://ca.internal:9000/acme/directory"),
        "private_set": _acme("https://ca.internal:9000/acme/directory", budget={"orders": 20, "per": "1h"}),
        "internal": {"type": "internal_ca", "ca_cert": str(ca_files[0]), "ca_key_file": str(ca_files[1])},
    })
    budget = {name: settings.issuance_budget(name) for name, settings in inventory.issuers.items()}
    assert (budget["le"].orders, budget["le"].per) == (150, 3 * HOUR)  # well under LE's 300 per 3h
    assert budget["le"].key == budget["le_again"].key != budget["le_other"].key  # one account, one budget
    assert budget["le_off"].orders is None and budget["private"].orders is None  # the CA's pause only
    assert (budget["private_set"].orders, budget["private_set"].per) == (20, HOUR)
    assert budget["internal"] is None
    assert "password" not in repr(_budget())  # the identity (a directory URL may carry one) is never shown


@pytest.mark.parametrize(("budget", "said"), [
    ({"orders": 0, "per": "3h"}, "issuers.le.acme.budget.orders: Input should be greater than or equal to 1"),
    ({"orders": 10, "per": "0s"}, "issuers.le.acme.budget.per: '0s': must be longer than zero"),
    ({"orders": 10, "per": "soon"}, "issuers.le.acme.budget.per: 'soon' is not a duration"),
    ({"orders": 10}, "issuers.le.acme.budget.per: Field required"),
    (True, "issuers.le.acme.budget: must be {orders: N, per: DURATION} or off"),
])
def test_a_bad_budget_is_one_line_naming_the_field(tmp_path: Path, budget: object, said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _issuers(tmp_path, {"le": _acme(LE, budget=budget)})
    (line,) = str(caught.value).splitlines()
    assert said in line and line.startswith(str(tmp_path / "issuers.yaml")), line


# --- rotations ----------------------------------------------------------------------------


@pytest.fixture
def budgeted(sim: ClusterSimulator, ca_files: tuple[Path, Path], tmp_path: Path,
             redis_store: RedisServer) -> Inventory:
    """The internal CA with a budget of one order per hour (set: an internal CA has none by default)."""
    path = write_inventory(tmp_path / "inv.yaml", sim, ca_files)
    data = yaml.safe_load(path.read_text())
    data["issuers"]["internal"]["budget"] = {"orders": 1, "per": "1h"}
    path.write_text(yaml.safe_dump(data))
    return load_inventory(path)


def _options(rotation_id: str | None = None, **extra: object) -> RotationOptions:
    return RotationOptions(rotation_id=rotation_id, poll_interval=0.05, push_backoff=0.05,
                           verify_deadline=timedelta(seconds=5), **extra)  # type: ignore[arg-type]


def test_a_spent_budget_is_no_failure_and_a_queued_rotation_is_retried_when_it_returns(
        sim: ClusterSimulator, budgeted: Inventory) -> None:
    clock = FakeClock(datetime.now(UTC))
    with ServiceContext(inventory=lambda: budgeted, clock=clock) as ctx:
        # api first: the REST client checks an api certificate by the wall clock, and the retry is an hour on
        first = rotate_and_record(ctx, "sim", "api", _options(new_rotation_id()), retries=0)
        assert first.record.outcome is Outcome.VERIFIED and first.retry_id is None, first.record.error
        pushes = len(sim.received_update_bodies)

        second_id = new_rotation_id()
        second = rotate_and_record(ctx, "sim", "cm", _options(second_id), retries=0)
        record = second.record
        assert record.outcome is Outcome.REFUSED and record.blocked_by and not record.pushed, record.error
        assert "issuer internal's budget is spent until " in (record.error or "")
        assert "nothing was ordered" in (record.error or "")
        # queued: retried (the SharedLockBusy path) once the order returns to the budget, not before
        assert second.retry_id == f"{second_id}.1" and second.retry_in >= RECHECK_MAX.total_seconds()
        state = ctx.state.state("sim", "cm")
        assert not state.get("failures") and not state.get("next_attempt"), state  # no backoff of its own
        assert len(sim.received_update_bodies) == pushes

        (row,) = service_status(ctx)["issuer_budgets"]
        assert (row["issuer"], row["left"], row["orders"], row["per"]) == ("internal", 0, 1, "1h")
        assert row["waits_until"] == (clock.now() + HOUR).strftime("%Y-%m-%d %H:%M:%S")
        metrics = generate_latest(registry_for(ctx.state, clock)).decode()
        assert 'rotation_issuer_orders_left{ca="' in metrics and "} 0.0" in metrics

        clock.advance(RECHECK_MAX.total_seconds())  # looked at again: still spent, waits again, still no failure
        early = rotate_and_record(ctx, "sim", "cm", _options(second.retry_id), retries=1)
        assert early.record.outcome is Outcome.REFUSED and early.retry_id == f"{second_id}.2", early.record.error
        assert not ctx.state.state("sim", "cm").get("failures")

        clock.advance(3600 - RECHECK_MAX.total_seconds())  # the first order left the window
        retried = rotate_and_record(ctx, "sim", "cm", _options(early.retry_id), retries=2)
        assert retried.record.outcome is Outcome.VERIFIED, retried.record.error


def test_refusals_before_the_order_cost_no_budget_and_a_dry_run_that_orders_does(budgeted: Inventory) -> None:
    clock = FakeClock(datetime.now(UTC))
    budget = budgeted.issuers["internal"].issuance_budget("internal")
    assert budget is not None
    with ServiceContext(inventory=lambda: budgeted, clock=clock) as ctx:
        with ctx.state.hold(budgeted.cluster("sim").identity, "cm", "another rotation"):
            (held,) = [rotate_and_record(ctx, "sim", "cm", _options()).record]
        assert held.outcome is Outcome.REFUSED and "already in progress" in (held.error or "")
        assert ctx.state.budget_use(budget, clock.now()).used == 0  # refused before the issuer was asked

        dry = rotate_and_record(ctx, "sim", "api", _options(dry_run=True)).record
        assert dry.outcome is Outcome.DRY_RUN, dry.error
        assert ctx.state.budget_use(budget, clock.now()).used == 1  # it ordered: it counts

        # `rotate --inline`: said, not retried, exit 2 (refused, nothing pushed)
        inline = rotate_and_record(ctx, "sim", "cm", _options()).record
        assert inline.outcome is Outcome.REFUSED and inline.blocked_by
        assert (inline.error or "").startswith("issuer internal's budget is spent until ")
        assert exit_code_for([inline], dry_run=False) == 2
        assert not ctx.state.state("sim", "cm").get("failures")


class _Queued:
    """The scan's queue, recording what it would queue."""

    def __init__(self, busy: tuple[str, ...] = ()) -> None:
        self.queued: list[str] = []
        self.busy = busy  # already queued or running

    def submit(self, cluster: str, cert_name: str, **options: object) -> str:
        if cert_name in self.busy:
            raise RotationInProgress(f"{cluster}/{cert_name}: a rotation is already in progress")
        self.queued.append(cert_name)
        return f"queued-{cert_name}"


def test_a_scan_queues_no_more_rotations_than_the_budget_has_left(budgeted: Inventory) -> None:
    clock = FakeClock(datetime.now(UTC) + timedelta(days=400))  # every certificate expired: all due
    budget = budgeted.issuers["internal"].issuance_budget("internal")
    assert budget is not None
    with ServiceContext(inventory=lambda: budgeted, clock=clock) as ctx:
        queue = _Queued()
        result = scan_and_queue(ctx, "sim", queue, uniform=lambda a, b: 0.0)  # type: ignore[arg-type]
        assert len(queue.queued) == 1 and len(result["waiting_for_budget"]) >= 2, result
        # a certificate already queued takes no slot of the scan's: the next due one is queued instead
        queue = _Queued(busy=(queue.queued[0],))
        result = scan_and_queue(ctx, "sim", queue, uniform=lambda a, b: 0.0)  # type: ignore[arg-type]
        assert len(queue.queued) == 1 and result["in_progress"] == list(queue.busy), result
        ctx.state.take_order(budget, "elsewhere", clock.now())  # another worker took the order
        queue = _Queued()
        result = scan_and_queue(ctx, "sim", queue, uniform=lambda a, b: 0.0)  # type: ignore[arg-type]
        assert queue.queued == [] and result["waiting_for_budget"], result


# --- the CA says rateLimited ----------------------------------------------------------------


def test_a_rate_limited_answer_pauses_the_issuers_other_rotations_without_asking_the_ca(
        sim: ClusterSimulator, ca_files: tuple[Path, Path], tmp_path: Path, redis_store: RedisServer,
        fake_ca: FakeCA) -> None:
    fake_ca.with_ari, fake_ca.retry_after, fake_ca.rate_limit_detail = False, "120", "too many new orders"
    path = write_inventory(tmp_path / "inv.yaml", sim, ca_files)
    data = yaml.safe_load(path.read_text())
    data["issuers"]["ca"] = _acme(f"{fake_ca.url}/dir", email="ops@example.com")
    data["clusters"]["sim"]["certificates"] = {"api": {"issuer": "ca", "hosts": ["api.example.com"]},
                                               "cm": {"issuer": "ca", "hosts": ["cm.example.com"]}}
    path.write_text(yaml.safe_dump(data))
    inventory = load_inventory(path)
    clock = FakeClock(datetime.now(UTC))
    with ServiceContext(inventory=lambda: inventory, clock=clock) as ctx:
        first = rotate_and_record(ctx, "sim", "api", _options(new_rotation_id()), retries=0).record
        assert first.outcome is Outcome.REFUSED and first.retry_after == 120, first.error
        asked = fake_ca.requests

        paused = rotate_and_record(ctx, "sim", "cm", _options(new_rotation_id()), retries=0)
        record = paused.record
        assert fake_ca.requests == asked  # the CA was not asked again
        assert record.outcome is Outcome.REFUSED and record.blocked_by, record.error
        assert "issuer ca is paused until " in (record.error or "") and "too many new orders" in (record.error or "")
        assert paused.retry_id and paused.retry_in >= 120 - 1
        assert not ctx.state.state("sim", "cm").get("failures")

        (row,) = service_status(ctx)["issuer_budgets"]
        assert row["issuer"] == "ca" and row["paused_until"] and row["paused_reason"] == "too many new orders"

        clock.advance(121)  # the pause is over: the CA is asked again
        rotate_and_record(ctx, "sim", "cm", _options(paused.retry_id), retries=1)
        assert fake_ca.requests > asked


def test_an_acme_issuers_order_counts_and_the_next_waits_for_the_budget(
        sim: ClusterSimulator, ca_files: tuple[Path, Path], tmp_path: Path, redis_store: RedisServer,
        named: NamedServer, pebble: PebbleServer) -> None:
    """Real Pebble: the order it answers is the budget's one; the next rotation (a dry run: it would order too)
    waits for the budget instead of ordering."""
    path = write_inventory(tmp_path / "inv.yaml", sim, ca_files)
    data = yaml.safe_load(path.read_text())
    (tmp_path / "tsig.secret").write_text(named.tsig_secret)
    data["issuers"]["pebble"] = _acme(
        pebble.directory_url, email="ops@example.com", challenge="dns-01", ca_bundle=str(pebble.tls_cert),
        trust_roots=str(pebble.root_file), order_timeout="30s", budget={"orders": 1, "per": "1h"},
        dns={"provider": "rfc2136", "server": named.address, "tsig_key_name": TSIG_NAME,
             "tsig_secret_file": "tsig.secret", "propagation_servers": [named.address], "propagation_timeout": "10s"})
    data["clusters"]["sim"].update(issuer="pebble", certificates={"proxy": {"hosts": [ZONE]}})
    path.write_text(yaml.safe_dump(data))
    inventory = load_inventory(path)
    budget = inventory.issuers["pebble"].issuance_budget("pebble")
    assert budget is not None and budget.orders == 1
    with ServiceContext(inventory=lambda: inventory) as ctx:
        first = rotate_and_record(ctx, "sim", "proxy", _options()).record
        assert first.outcome is Outcome.VERIFIED, first.error
        assert ctx.state.budget_use(budget, ctx.clock.now()).used == 1
        dry = rotate_and_record(ctx, "sim", "proxy", _options(dry_run=True)).record
        assert dry.outcome is Outcome.REFUSED and dry.blocked_by, dry.error
        assert (dry.error or "").startswith("issuer pebble's budget is spent until ")
        assert ctx.state.budget_use(budget, ctx.clock.now()).used == 1


def test_rotate_inline_says_the_budget_is_spent_and_status_shows_it_on_the_local_store(
        sim: ClusterSimulator, ca_files: tuple[Path, Path], tmp_path: Path, state_dir: Path) -> None:
    """`rotation rotate --inline` with ROTATION_STORE=local: the second order of the hour is refused, said in
    one line, exit 2; `rotation status` shows the budget spent."""
    from typer.testing import CliRunner

    from rotation.cli.main import app

    path = write_inventory(tmp_path / "inv.yaml", sim, ca_files)
    data = yaml.safe_load(path.read_text())
    data["issuers"]["internal"]["budget"] = {"orders": 1, "per": "1h"}
    path.write_text(yaml.safe_dump(data))
    runner = CliRunner()
    result = runner.invoke(app, ["rotate", "sim", "cm", "api", "--inline", "-c", str(path)])
    assert result.exit_code == 2, result.output
    assert "sim/cm verified" in result.stdout and "sim/api refused" in result.stdout, result.stdout
    assert "issuer internal's budget is spent until " in " ".join(result.stdout.split())

    result = runner.invoke(app, ["status", "-c", str(path), "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["issuer_budgets"]
    assert (row["issuer"], row["left"], row["orders"]) == ("internal", 0, 1) and row["waits_until"]
    assert not [r for r in json.loads(result.stdout)["certificates"] if r["failures"]]


def test_a_real_worker_retries_a_queued_rotation_that_found_the_budget_spent_and_the_cli_follows_it(
        simulator: ClusterSimulator, inventory_path: Path, service_env: dict[str, str], start_service: Any,
        capfd: pytest.CaptureFixture[str]) -> None:
    """`rotation worker` (Celery) and `rotation rotate` queued: the first try finds the budget spent (one order
    per 4 s, taken by hand), is refused uncounted, retried by the worker when the order returns, and verified."""
    from typer.testing import CliRunner

    from workers.main import app

    data = yaml.safe_load(inventory_path.read_text())
    data["issuers"]["internal"]["budget"] = {"orders": 1, "per": "4s"}
    inventory_path.write_text(yaml.safe_dump(data))
    with ServiceContext() as ctx:
        budget = ctx.inventory().issuers["internal"].issuance_budget("internal")
        assert budget is not None
        start_service("worker")
        assert ctx.state.take_order(budget, "by-hand", ctx.clock.now()).taken  # the budget is spent now
        result = CliRunner().invoke(app, ["rotate", "sim", "metrics_exporter"])
        said = result.output + capfd.readouterr().err
        assert result.exit_code == 0, said
        assert "issuer internal's budget is spent until " in said and "the worker tries it again" in said, said
        (final, first) = ctx.state.history("sim", limit=2)
        assert final.outcome is Outcome.VERIFIED and final.id == f"{first.id}.1", final.error
        assert first.outcome is Outcome.REFUSED and first.blocked_by and not first.pushed
        assert not ctx.state.state("sim", "metrics_exporter").get("failures")
        assert ctx.state.pending() == {}


def test_a_refusal_for_the_budget_says_it_waits_only_when_the_worker_tries_again(budgeted: Inventory) -> None:
    """`rotate --inline`, a chat dry run and a queued rotation's last try are never retried: "the rotation waits
    for it" misled their callers into waiting for a rotation that had ended."""
    clock = FakeClock(datetime.now(UTC))
    budget = budgeted.issuers["internal"].issuance_budget("internal")
    assert budget is not None
    with ServiceContext(inventory=lambda: budgeted, clock=clock) as ctx:
        assert ctx.state.take_order(budget, "by-hand", clock.now()).taken
        for options, retries in ((_options(), None), (_options(dry_run=True), None), (_options(), 4)):
            ended = rotate_and_record(ctx, "sim", "cm", options, retries=retries)
            assert ended.record.outcome is Outcome.REFUSED and ended.retry_id is None
            assert "nothing was ordered" in (ended.record.error or "")
            assert "wait" not in (ended.record.error or "") and "tries it again" not in (ended.record.error or "")
        queued = rotate_and_record(ctx, "sim", "cm", _options(), retries=0)
        assert queued.retry_id is not None
        assert (queued.record.error or "").endswith("nothing was ordered; the worker tries it again"), queued.record


def test_an_order_that_never_reached_the_ca_gives_its_budget_back(
        sim: ClusterSimulator, ca_files: tuple[Path, Path], tmp_path: Path, redis_store: RedisServer) -> None:
    """The directory unreachable: nothing was ordered, yet each try spent one order. A CA outage of minutes, its
    due certificates tried and retried, left the whole fleet without orders for the window after it."""
    from support.processes import free_port

    path = write_inventory(tmp_path / "inv.yaml", sim, ca_files)
    data = yaml.safe_load(path.read_text())
    data["issuers"]["ca"] = _acme(f"http://127.0.0.1:{free_port()}/dir", email="ops@example.com",
                                  budget={"orders": 2, "per": "1h"})
    data["clusters"]["sim"]["certificates"] = {"api": {"issuer": "ca", "hosts": ["api.example.com"]}}
    path.write_text(yaml.safe_dump(data))
    inventory = load_inventory(path)
    budget = inventory.issuers["ca"].issuance_budget("ca")
    clock = FakeClock(datetime.now(UTC))
    with ServiceContext(inventory=lambda: inventory, clock=clock) as ctx:
        for _ in range(3):
            failed = rotate_and_record(ctx, "sim", "api", _options(new_rotation_id()), retries=0).record
            assert failed.outcome is Outcome.REFUSED and "directory unreachable" in (failed.error or ""), failed.error
            assert not failed.blocked_by  # the CA's failure, not the budget's
        assert ctx.state.budget_use(budget, clock.now()).used == 0


def test_an_order_given_back_leaves_the_window(store: RedisState | LocalState) -> None:
    budget, now = _budget(orders=2), datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    assert store.take_order(budget, "r1", now).taken and store.take_order(budget, "r2", now).taken
    store.return_order(budget, "r1")
    store.return_order(budget, "never-taken")  # nothing to give back: nothing changes
    use = store.budget_use(budget, now)
    assert (use.used, use.left) == (1, 1)


def test_a_redelivered_rotation_that_orders_again_counts_again(
        sim: ClusterSimulator, ca_files: tuple[Path, Path], tmp_path: Path, redis_store: RedisServer) -> None:
    """A worker died after taking the order (acks_late: the task is delivered again, same rotation id): the
    second delivery orders again, and the CA counts both. One id, one entry: the second went uncounted."""
    from rotation.core.model import RotationRecord, Step

    path = write_inventory(tmp_path / "inv.yaml", sim, ca_files)
    data = yaml.safe_load(path.read_text())
    data["issuers"]["internal"]["budget"] = {"orders": 3, "per": "1h"}
    path.write_text(yaml.safe_dump(data))
    inventory = load_inventory(path)
    budget = inventory.issuers["internal"].issuance_budget("internal")
    assert budget is not None
    clock = FakeClock(datetime.now(UTC))
    with ServiceContext(inventory=lambda: inventory, clock=clock) as ctx:
        rotation_id = new_rotation_id()
        assert ctx.state.take_order(budget, rotation_id, clock.now()).taken  # the first delivery's order
        ctx.state.save(RotationRecord(id=rotation_id, cluster="sim", cert_name="cm", trigger="beat",
                                      started_at=clock.now(), steps=[Step(name="issue", started_at=clock.now())]))
        again = rotate_and_record(ctx, "sim", "cm", _options(rotation_id), retries=0).record
        assert again.outcome is Outcome.VERIFIED, again.error
        assert ctx.state.budget_use(budget, clock.now()).used == 2


@pytest.mark.parametrize("kind", ["gone", "OOM"])  # hung: the fault sweep's (short socket timeouts)
def test_redis_failing_at_the_budget_take_is_a_clean_refusal_before_the_order(
        sim: ClusterSimulator, budgeted: Inventory, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """The take is the last Redis word before the order: Redis gone or refusing writes there orders
    nothing, pushes nothing, and says the store is unreachable (`rotate --inline`: exit 2)."""
    from support.resp_proxy import RespProxy

    from rotation.core.errors import StoreUnavailable

    budget = budgeted.issuers["internal"].issuance_budget("internal")
    assert budget is not None
    proxy = RespProxy(redis_store_port(monkeypatch))
    try:
        monkeypatch.setenv("ROTATION_REDIS_URL", proxy.url)
        pushes = len(sim.received_update_bodies)
        with ServiceContext(inventory=lambda: budgeted) as ctx:
            proxy.arm(None, kind, command="eval", holding=b"rotation:budget:")
            with pytest.raises(StoreUnavailable):
                rotate_and_record(ctx, "sim", "cm", _options())
            assert proxy.trips, "the budget's take never met the fault"
            proxy.heal()
            assert ctx.state.budget_use(budget, ctx.clock.now()).used == 0
        assert len(sim.received_update_bodies) == pushes
    finally:
        proxy.stop()


def redis_store_port(monkeypatch: pytest.MonkeyPatch) -> int:
    import os
    from urllib.parse import urlsplit

    return urlsplit(os.environ["ROTATION_REDIS_URL"]).port or 6379


def test_a_clock_that_jumps_back_still_counts_the_orders_it_placed_later(store: RedisState | LocalState) -> None:
    """An order stamped after the clock's new now (NTP stepped it back, a VM restored) is inside the window,
    not outside it: the budget never grows by a clock step (it waits that much longer instead)."""
    budget, start = _budget(1), datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC)  # across a DST change: UTC only
    assert store.take_order(budget, "r1", start).taken
    back = start - timedelta(minutes=30)
    refused = store.take_order(budget, "r2", back)
    assert not refused.taken and refused.used == 1 and refused.blocked_until(back) == start + HOUR
    assert refused.refusal(back).retry_after == RECHECK_MAX.total_seconds()
    assert store.take_order(budget, "r2", start + HOUR).taken
