"""The state port: the same contract held by the Redis state (a real redis-server) and the local one
(files and flock), so no code above it needs to know which one it has."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from support.clock import FakeClock
from support.processes import RedisServer, wait_for

from rotation.adapters.secrets import SecretBox
from rotation.adapters.state import ServiceState
from rotation.adapters.state.base import Changes
from rotation.adapters.state.journal import RecordJournal
from rotation.adapters.state.local import LocalState
from rotation.adapters.state.redis import RedisState
from rotation.adapters.state.redis_client import connect
from rotation.core.errors import ConfigError, RotationInProgress, StoreUnavailable
from rotation.core.model import Outcome, RotationRecord

IDENTITY = "127.0.0.1:9443"


@pytest.fixture(params=["redis", "local"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceState]:
    clock = FakeClock()
    if request.param == "local":
        yield LocalState(tmp_path / "state", clock)
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    server.client().flushall()
    yield RedisState(connect(server.url), clock, lock_lease=5)


def record(rotation_id: str, cert: str = "cm", minutes: int = 0, outcome: Outcome = Outcome.VERIFIED
           ) -> RotationRecord:
    start = FakeClock().now() + timedelta(minutes=minutes)
    return RotationRecord(id=rotation_id, cluster="east", cert_name=cert, trigger="cli", started_at=start,
                          finished_at=start + timedelta(seconds=20), outcome=outcome)


def test_records_newest_first_and_the_last_save_of_an_id_wins(state: ServiceState) -> None:
    state.save(record("a", "cm", 0, Outcome.IN_PROGRESS))
    state.save(record("b", "proxy", 1))
    state.save(record("a", "cm", 0, Outcome.ROLLED_BACK))
    assert [r.id for r in state.history()] == ["b", "a"]
    assert [r.id for r in state.history("east", "cm")] == ["a"]
    assert state.get("a").outcome is Outcome.ROLLED_BACK  # type: ignore[union-attr]
    assert state.get("nope") is None and state.history("west") == []


def test_one_holder_per_certificate_and_who_it_is(state: ServiceState) -> None:
    with state.hold(IDENTITY, "cm", "rotation a") as lease:
        lease.check()
        assert not lease.lost
        with pytest.raises(RotationInProgress, match="rotation a"), state.hold(IDENTITY, "cm", "rotation b"):
            pass
        holders = state.lock_holders([(IDENTITY, "cm"), (IDENTITY, "proxy")])
        assert list(holders) == [(IDENTITY, "cm")] and "rotation a" in holders[(IDENTITY, "cm")]
        with state.hold(IDENTITY, "proxy", "another certificate"):
            pass
    assert state.lock_holders([(IDENTITY, "cm")]) == {}
    with state.hold(IDENTITY, "cm", "rotation c"):
        pass


def test_one_beat_holds_the_schedule_renews_it_and_releases_it(state: ServiceState) -> None:
    assert state.hold_schedule("beat A", 30) is None
    assert state.hold_schedule("beat B", 30) == "beat A"
    assert state.hold_schedule("beat A", 30) is None  # a renewal
    state.release_schedule("beat B")  # not B's to release
    assert state.hold_schedule("beat B", 30) == "beat A"
    state.release_schedule("beat A")
    assert state.hold_schedule("beat B", 30) is None
    assert state.hold_schedule("beat A", 30) == "beat B"


def test_a_lease_nobody_renews_lapses(state: ServiceState) -> None:
    # Redis's lease runs on its own clock: long enough that a busy machine cannot let it lapse between
    # the first two calls
    assert state.hold_schedule("beat A", 3) is None
    assert state.hold_schedule("beat B", 3) == "beat A"
    clock: FakeClock = getattr(state, "clock")  # noqa: B009 - both implementations keep the injected clock
    clock.advance(4)  # the local lease counts on the injected clock, Redis's on its own
    wait_for(lambda: state.hold_schedule("beat B", 30) is None, 20, 0.05, what="the lease to lapse")
    assert state.hold_schedule("beat A", 30) == "beat B"


def test_a_pending_claim_refuses_a_second_one_until_released_and_follows_a_retry(state: ServiceState) -> None:
    assert state.claim_pending("east", "cm", "r1", 600) is None
    assert state.claim_pending("east", "cm", "r2", 600) == "r1"
    state.move_pending("east", "cm", "r1", "r1.1")
    state.move_pending("east", "cm", "someone-else", "r9")  # not ours: nothing moves
    assert state.pending() == {("east", "cm"): "r1.1"}
    state.release_pending("east", "cm", "r1")  # an old id releases nothing
    assert state.pending() == {("east", "cm"): "r1.1"}
    state.release_pending("east", "cm", "r1.1")
    assert state.pending() == {}
    assert state.claim_pending("east", "cm", "r3", 600) is None


def test_a_scan_save_gives_back_the_kept_renewal_information(state: ServiceState) -> None:
    """What the CA said of a certificate's renewal (kept by an earlier scan) comes back with the next scan's
    save, in the same round trip: a scan reads no state per certificate."""
    ari = {"for": "ab", "due_at": None, "ask_again": "2026-01-01T02:00:00+00:00"}
    state.update_state("west", "api", ari=ari)
    assert state.save_scan("west", {"api": {"health": "ok"}, "cm": {"health": "ok"}}).ari == {"api": ari}
    # and what the last rotation installed (a renewal due as soon as issued is not rotated at every scan)
    state.update_state("west", "cm", intended="cd")
    assert state.save_scan("west", {"api": {"health": "ok"}, "cm": {"health": "ok"}}).installed == {"cm": "cd"}


def test_certificate_state_scans_and_backoff(state: ServiceState) -> None:
    assert state.save_scan("east", {"cm": {"health": "ok", "served": {"node1": "ab"}, "gone": None}}).next_attempts \
        == {"cm": None}
    state.update_state("east", "cm", failures=2, next_attempt="2026-01-01T01:00:00+00:00", last_error="HTTP 500")
    assert state.save_scan("east", {"cm": {"health": "due"}}).next_attempts == {"cm": "2026-01-01T01:00:00+00:00"}
    assert state.state("east", "cm") == {"health": "due", "served": {"node1": "ab"}, "failures": 2,
                                         "next_attempt": "2026-01-01T01:00:00+00:00", "last_error": "HTTP 500"}
    assert state.clear_backoff("east", "cm") == {"failures": 2, "next_attempt": "2026-01-01T01:00:00+00:00",
                                                 "last_error": "HTTP 500"}
    assert state.state("east", "cm")["failures"] == 0 and "next_attempt" not in state.state("east", "cm")
    state.clear_state_fields("east", "cm", "served")
    assert list(state.all_states()) == [("east", "cm")] and "served" not in state.all_states()[("east", "cm")]
    state.record_scan("west", ok=False, error="unreachable")
    state.record_policy_audit("east", drift=2, errors=0, summary="two drifts")
    scans = state.scans()
    assert scans["east"]["last_success"] == "2026-01-01T00:00:00+00:00"  # the injected clock
    assert scans["east"]["policy_drift"] == "2" and scans["east"]["policy_summary"] == "two drifts"
    assert scans["west"]["last_error"] == "unreachable" and scans["west"]["last_failure"]


def test_scan_warnings_new_ones_are_reported_once_even_by_two_scans_at_once(state: ServiceState) -> None:
    assert state.save_scan_warnings("east", {"a": "A expires"}) == ["A expires"]
    assert state.save_scan_warnings("east", {"a": "A expires", "b": "B expires"}) == ["B expires"]
    assert state.save_scan_warnings("east", {"b": "B expires"}) == []
    scans = state.scans()["east"]
    assert (scans["warnings"], scans["warning_count"], scans["warning_keys"]) == ("B expires", "1", "b")
    # A scan stores its warnings with its states, in the same write: same answers.
    saved = state.save_scan("east", {"cm": {"health": "ok"}}, {"b": "B expires", "c": "C expires"})
    assert saved.new_warnings == ["C expires"] and saved.next_attempts == {"cm": None}
    assert state.save_scan("east", {"cm": {"health": "ok"}}, {"b": "B expires"}).new_warnings == []
    assert state.save_scan("east", {"cm": {"health": "ok"}}).new_warnings == []  # none given: none stored
    scans = state.scans()["east"]
    assert (scans["warnings"], scans["warning_count"], scans["warning_keys"]) == ("B expires", "1", "b")

    # Two scans of one cluster at once, each with the same new warning: exactly one of them reports it.
    for round_ in range(30):
        warnings = {"b": "B expires", f"new{round_}": f"new warning {round_}"}
        start = threading.Barrier(2)
        reported: list[list[str]] = []

        def scan(warnings: dict[str, str] = warnings, start: threading.Barrier = start,
                 reported: list[list[str]] = reported) -> None:
            start.wait()
            reported.append(state.save_scan_warnings("east", warnings))

        scans_at_once = [threading.Thread(target=scan) for _ in range(2)]
        for thread in scans_at_once:
            thread.start()
        for thread in scans_at_once:
            thread.join()
        assert sorted(reported) == [[], [f"new warning {round_}"]], round_


def test_a_finished_rotation_is_noted_in_one_write_counters_fields_and_cleared_fields(state: ServiceState) -> None:
    state.update_state("east", "cm", failures=2, next_attempt="2026-01-01T01:00:00+00:00", last_error="HTTP 500")
    state.note_rotation(record("a"), {"failures": 0, "last_rotation": "a"}, clear=("next_attempt", "last_error"))
    assert state.state("east", "cm") == {"failures": 0, "last_rotation": "a"}
    assert state.stats()["count|east|cm|verified"] == "1"
    assert ("east", "cm") in state.all_states()
    state.note_rotation(record("b", outcome=Outcome.FAILED), {"last_rotation": "b"})  # nothing to clear
    assert state.state("east", "cm") == {"failures": 0, "last_rotation": "b"}
    assert state.stats()["count|east|cm|failed"] == "1"


def test_counters_notes_and_secrets(state: ServiceState) -> None:
    state.count_rotation(record("a", outcome=Outcome.FAILED))
    state.count_rotation(record("b", outcome=Outcome.FAILED))
    unfinished = RotationRecord(id="c", cluster="east", cert_name="cm", trigger="cli", started_at=FakeClock().now())
    state.count_rotation(unfinished)  # not finished: not counted
    stats = state.stats()
    assert stats["count|east|cm|failed"] == "2" and stats["duration_count|failed"] == "2"
    assert float(stats["duration_sum|failed"]) == 40.0 and stats["duration_bucket|failed|30.0"] == "2"
    assert "duration_bucket|failed|15.0" not in stats
    state.note_inventory("host-1", {"path": "/etc/rotation.yaml", "error": "bad"})
    assert state.inventory_problems() == {"host-1": {"path": "/etc/rotation.yaml", "error": "bad"}}
    state.note_inventory("host-1", None)
    assert state.inventory_problems() == {}
    secrets = state.secret_store(SecretBox([SecretBox.generate_key().encode()]))
    secrets.put("original/x", b"kept")
    assert secrets.get("original/x") == b"kept"
    secrets.delete("original/x")
    assert secrets.get("original/x") is None
    state.ping()


def test_a_secret_read_after_the_key_rotated_is_sealed_again_with_the_new_key(state: ServiceState) -> None:
    """README: comma-separate ROTATION_SECRET_KEY to rotate it, new first. A stored secret (an ACME account,
    a kept original) read under the new keys is sealed again with the new one (its expiry kept), so the old
    key can be dropped; before, it stayed under the old key for good."""
    old, new = SecretBox.generate_key().encode(), SecretBox.generate_key().encode()
    state.secret_store(SecretBox([old])).put("acme/account", b"account key")
    state.secret_store(SecretBox([old])).put("original/x", b"kept", ttl_seconds=3600)
    rotated = state.secret_store(SecretBox([new, old]))
    assert rotated.get("acme/account") == b"account key" and rotated.get("original/x") == b"kept"
    assert rotated.get("nothing") is None
    only_new = state.secret_store(SecretBox([new]))
    assert only_new.get("acme/account") == b"account key" and only_new.get("original/x") == b"kept"
    if isinstance(state, RedisState):
        assert 3500 < state.redis.ttl("rotation:secret:original/x") <= 3600, "the expiry is kept"
        assert state.redis.ttl("rotation:secret:acme/account") == -1
    with pytest.raises(ConfigError, match="cannot decrypt"):  # sealed with the new key only now
        state.secret_store(SecretBox([old])).get("acme/account")


def test_local_pending_claims_expire_on_the_injected_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    state = LocalState(tmp_path, clock)
    assert state.claim_pending("east", "cm", "r1", 60) is None
    clock.advance(59)
    assert state.claim_pending("east", "cm", "r2", 60) == "r1"
    clock.advance(2)  # a lost message frees the slot, as Redis' EX does
    assert state.pending() == {}
    assert state.claim_pending("east", "cm", "r2", 60) is None


def heard(changes: Changes, expected: set[str]) -> None:
    """``expected``, in one wait or several (messages may arrive apart), and nothing else."""
    got: set[str] = set()
    while got != expected:
        more = changes.wait(10)
        assert more and more <= expected, (more, expected)
        got |= more


def test_a_watcher_hears_of_saved_records_and_moved_or_released_markers_by_id(state: ServiceState) -> None:
    state.save(record("before"))  # before the watch: never heard of
    assert state.claim_pending("east", "cm", "r1", 600) is None
    with state.watch() as changes:
        assert changes.wait(0.01) == set()  # nothing changed since the watch began
        state.save(record("r1", outcome=Outcome.IN_PROGRESS))
        heard(changes, {"r1"})
        state.move_pending("east", "cm", "someone-else", "r9")  # not ours: nothing moves, nothing said
        state.move_pending("east", "cm", "r1", "r1.1")
        heard(changes, {"r1", "r1.1"})
        state.release_pending("east", "cm", "r1")  # the marker is r1.1's now: nothing changes
        state.release_pending("east", "cm", "r1.1")
        heard(changes, {"r1.1"})
        state.save(record("r2"))
        state.save(record("r3", "proxy"))
        heard(changes, {"r2", "r3"})
        assert changes.wait(0.01) == set()


def test_a_journaled_record_never_overwrites_one_another_host_ended(own_redis: RedisServer, tmp_path: Path) -> None:
    """Host 1 keeps a record `in_progress` in its journal while Redis is away from it (then dies, say); the
    rotation is resumed and ended by host 2. When host 1 reaches Redis again, its journal must not put the
    stale `in_progress` version back over the ended one (it would then stay running forever)."""
    clock = FakeClock()
    host1, host2 = (RedisState(connect(own_redis.url, retries=0), clock, journal=RecordJournal(tmp_path / name))
                    for name in ("host1", "host2"))
    running = record("r1", outcome=Outcome.IN_PROGRESS)
    running.finished_at = None
    host1.save(running)
    own_redis.stop()
    try:
        with pytest.raises(StoreUnavailable):
            host1.save(running)  # kept in host 1's journal
    finally:
        own_redis.start()
    try:
        host2.save(record("r1", outcome=Outcome.ROLLED_BACK))  # the redelivered rotation ends it elsewhere
        assert [r.id for r in host1.history()] == ["r1"]  # host 1 reaches Redis again: its journal is written back
        assert host2.get("r1").outcome is Outcome.ROLLED_BACK  # type: ignore[union-attr]
        assert not RecordJournal(tmp_path / "host1").has_pending()
    finally:
        for host in (host1, host2):  # host 1's write-back thread may outlive the test: its socket may not
            host.redis.close()


class _EndedMeanwhile(redis.Redis):
    """Host 1's client: right after its first command on the record's key, host 2 ends the record (``then``)."""

    def __init__(self, port: int, then: Callable[[], None]) -> None:
        super().__init__(port=port, decode_responses=True)
        self.then: Callable[[], None] | None = then

    def execute_command(self, *args: Any, **options: Any) -> Any:
        answer = super().execute_command(*args, **options)
        if self.then is not None and "rotation:record:r1" in args:
            then, self.then = self.then, None
            then()
        return answer


def test_a_journaled_record_never_overwrites_one_ended_while_it_is_written_back(own_redis: RedisServer,
                                                                               tmp_path: Path) -> None:
    """Host 1 writes its journal back (a stale `in_progress` version) while host 2 (or host 1's own rotation
    thread) ends the record: whatever the order, the ended record must stay, never the stale version."""
    clock = FakeClock()
    journal = RecordJournal(tmp_path / "host1")
    running = record("r1", outcome=Outcome.IN_PROGRESS)
    running.finished_at = None
    journal.keep(running)
    host2 = RedisState(connect(own_redis.url), clock)
    client = _EndedMeanwhile(own_redis.port, lambda: host2.save(record("r1", outcome=Outcome.ROLLED_BACK)))
    try:
        host1 = RedisState(client, clock, journal=journal)
        host1.history()  # writes the journal back
        assert host2.get("r1").outcome is Outcome.ROLLED_BACK  # type: ignore[union-attr]
        assert not journal.has_pending()
    finally:
        client.close()


def test_a_record_journaled_again_while_the_journal_is_written_back_is_kept(tmp_path: Path) -> None:
    """The journal is written back (another thread, another process of the host) while the rotation saves
    its record again and Redis refuses it: the newer version replaces the file just written back; it must
    stay for the next write-back, not be removed with the version before it."""
    journal = RecordJournal(tmp_path / "journal")
    running = record("r1", outcome=Outcome.IN_PROGRESS)
    running.finished_at = None
    journal.keep(running)
    ended = record("r1", outcome=Outcome.ROLLED_BACK)
    written: list[RotationRecord] = []

    def write(kept: RotationRecord) -> None:
        written.append(kept)
        if len(written) == 1:
            journal.keep(ended)  # the rotation's final save, refused meanwhile

    journal.flush(write)
    journal.flush(write)
    assert [r.outcome for r in written] == [Outcome.IN_PROGRESS, Outcome.ROLLED_BACK]
    assert not journal.has_pending()


def test_local_secrets_written_by_many_threads_at_once_are_never_lost_nor_torn(tmp_path: Path) -> None:
    """A worker's thread pool writes secrets at once (the same key: a retry; other keys: other
    certificates): every write lands whole, and the last value stored is one that was written."""
    store = LocalState(tmp_path, FakeClock()).secret_store(SecretBox([SecretBox.generate_key().encode()]))
    threads, rounds = 4, 50
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def write(number: int) -> None:
        try:
            for round_ in range(rounds):
                barrier.wait()
                store.put("original/shared", f"{number}-{round_}".encode() * 500)
                store.put(f"original/own-{number}", f"{round_}".encode() * 500)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
            barrier.abort()

    workers = [threading.Thread(target=write, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    last = store.get("original/shared")
    assert last in {f"{n}-{rounds - 1}".encode() * 500 for n in range(threads)}
    for number in range(threads):
        assert store.get(f"original/own-{number}") == f"{rounds - 1}".encode() * 500
    assert sorted(p.suffix for p in (tmp_path / "secrets").iterdir()) == [".enc"] * (threads + 1)


def test_the_next_attempt_metric_ends_when_the_moment_has_passed_as_status_says(state: ServiceState) -> None:
    """`rotation status` drops a backoff whose next attempt has passed (the scans no longer skip the
    certificate); the metric went on exporting that past moment, so an alert on it never resolved."""
    from prometheus_client import generate_latest

    from rotation.adapters.metrics import registry_for

    clock = FakeClock()
    state.update_state("east", "cm", failures=2, next_attempt=(clock.now() + timedelta(minutes=5)).isoformat())

    def samples() -> list[str]:
        return [line for line in generate_latest(registry_for(state, clock)).decode().splitlines()
                if line.startswith("rotation_certificate_next_attempt_timestamp_seconds{")]

    (line,) = samples()
    assert float(line.split()[-1]) == (clock.now() + timedelta(minutes=5)).timestamp()
    clock.advance(5 * 60)
    assert samples() == []
    assert any(line.startswith('rotation_certificate_failures{cert="cm",cluster="east"} 2.0')
               for line in generate_latest(registry_for(state, clock)).decode().splitlines())


def test_clusters_no_longer_in_the_inventory_are_forgotten_records_and_counters_stay(state: ServiceState) -> None:
    state.save_scan("east", {"cm": {"health": "ok"}})
    state.save_scan("west", {"cm": {"health": "ok"}, "api": {"health": "ok"}})
    state.update_state("west", "proxy", failures=1)
    state.record_policy_audit("north", drift=1, errors=0, summary="cm 1.1")
    state.save(record("a"))
    state.count_rotation(record("a"))
    assert state.forget_clusters(["east"]) == ["north", "west"]
    assert set(state.all_states()) == {("east", "cm")} and set(state.scans()) == {"east"}
    assert state.get("a") is not None and state.stats()["count|east|cm|verified"] == "1"
    assert state.forget_clusters(["east"]) == []
