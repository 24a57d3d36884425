"""Companions around a real rotation: the order of their hooks, and undo after a verified rollback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.processes import RedisServer
from support.rotate import rotate_here
from test_pipeline import served_everywhere

from rotation.adapters.rs.client import RSClient
from rotation.config import Inventory
from rotation.core.errors import RotationError, StoreUnavailable
from rotation.core.model import CertName, Outcome, RotationRecord
from rotation.core.validate import ParsedBundle
from rotation.simulator import ClusterSimulator
from rotation.usecases.rotate.companions import Applied, Memo, NoCompanion
from rotation.usecases.rotate.run import RotationOptions, Run


class Probe(NoCompanion):
    """Records every hook it sees, with what the cluster served at that moment; fails where told."""

    def __init__(self, name: str, sim: ClusterSimulator, journal: list[tuple[str, str, frozenset[str]]],
                 fail: str | None = None, fail_undo: bool = False) -> None:
        self.name, self.sim, self.journal, self.fail, self.fail_undo = name, sim, journal, fail, fail_undo

    def _note(self, hook: str) -> None:
        self.journal.append((self.name, hook, frozenset(served_everywhere(self.sim, CertName.PROXY))))
        if hook == self.fail:
            raise RotationError(f"{self.name} refuses at {hook}")

    def plan(self, run: Run, bundle: ParsedBundle) -> list[str]:
        return [f"would touch peer {self.name}"]

    def prepare(self, run: Run, bundle: ParsedBundle) -> Applied:
        self._note("prepare")
        return Applied(f"{self.name} prepared", {"peer": self.name, "fingerprint": bundle.fingerprint})

    def follow_up(self, run: Run, bundle: ParsedBundle) -> Applied:
        self._note("follow_up")
        return Applied(f"{self.name} followed up", {"peer": self.name})

    def finalize(self, run: Run, bundle: ParsedBundle) -> str:
        self._note("finalize")
        return "old entry removed"

    def undo(self, run: Run, memo: Memo) -> str:
        assert memo["peer"] == self.name  # the memo comes back from the record
        self._note("undo")
        if self.fail_undo:
            raise RotationError(f"{self.name} cannot be undone")
        return f"{self.name} undone"


def rotate_with(inventory: Inventory, *companions: Probe, dry_run: bool = False) -> RotationRecord:
    options = RotationOptions(poll_interval=0.05, push_backoff=0.05, companions=companions, dry_run=dry_run)
    (record,) = rotate_here(inventory, "sim", ["proxy"], options)
    return record


def hooks(journal: list[tuple[str, str, frozenset[str]]]) -> list[tuple[str, str]]:
    return [(name, hook) for name, hook, _ in journal]


def test_hooks_run_in_order_around_the_push(simulator: ClusterSimulator, inventory: Inventory,
                                            state_dir: Path) -> None:
    before = served_everywhere(simulator, CertName.PROXY)
    journal: list[tuple[str, str, frozenset[str]]] = []
    record = rotate_with(inventory, Probe("a", simulator, journal), Probe("b", simulator, journal))
    assert record.outcome is Outcome.VERIFIED, record.error
    assert hooks(journal) == [("a", "prepare"), ("b", "prepare"), ("a", "follow_up"), ("b", "follow_up"),
                              ("a", "finalize"), ("b", "finalize")]
    seen = {hook: served for _, hook, served in journal}
    assert seen["prepare"] == before  # make-before-break: prepared while the old certificate is served
    assert seen["follow_up"] == {record.new_fingerprint}  # follow-ups see the new one everywhere
    names = [s.name for s in record.steps]
    assert names.index("prepare:b") < names.index("push") < names.index("verify") < names.index("follow_up:a")
    assert [c["companion"] for c in record.companions] == ["a", "b", "a", "b"]
    assert "plan" in names and "would touch peer a" in next(s.detail for s in record.steps if s.name == "plan")


def test_a_failed_follow_up_rolls_back_then_undoes_newest_first(simulator: ClusterSimulator,
                                                                 inventory: Inventory, state_dir: Path) -> None:
    before = served_everywhere(simulator, CertName.PROXY)
    journal: list[tuple[str, str, frozenset[str]]] = []
    record = rotate_with(inventory, Probe("a", simulator, journal), Probe("b", simulator, journal, fail="follow_up"))
    assert record.outcome is Outcome.ROLLED_BACK
    assert "b refuses at follow_up" in (record.error or "")
    assert hooks(journal) == [("a", "prepare"), ("b", "prepare"), ("a", "follow_up"), ("b", "follow_up"),
                              ("a", "undo"), ("b", "undo"), ("a", "undo")]
    assert all(served == before for _, hook, served in journal if hook == "undo")  # undone after the rollback
    assert served_everywhere(simulator, CertName.PROXY) == before
    assert all(entry["undone"] for entry in record.companions)


def test_a_failed_prepare_undoes_the_others_and_pushes_nothing(simulator: ClusterSimulator,
                                                               inventory: Inventory, state_dir: Path) -> None:
    before = served_everywhere(simulator, CertName.PROXY)
    journal: list[tuple[str, str, frozenset[str]]] = []
    record = rotate_with(inventory, Probe("a", simulator, journal), Probe("b", simulator, journal, fail="prepare"))
    assert record.outcome is Outcome.REFUSED and not record.pushed
    assert hooks(journal) == [("a", "prepare"), ("b", "prepare"), ("a", "undo")]
    assert served_everywhere(simulator, CertName.PROXY) == before


def test_an_undo_that_fails_fails_the_rotation_and_stays_in_the_record(simulator: ClusterSimulator,
                                                                        inventory: Inventory,
                                                                        state_dir: Path) -> None:
    journal: list[tuple[str, str, frozenset[str]]] = []
    record = rotate_with(inventory, Probe("a", simulator, journal, fail_undo=True),
                         Probe("b", simulator, journal, fail="follow_up"))
    assert record.outcome is Outcome.FAILED
    assert "undo of a failed" in (record.error or "")
    assert [e["undone"] for e in record.companions if e["companion"] == "a"] == [False, False]


class StopsRedis(Probe):
    """Redis goes away once this companion has prepared its peer: before the original pair is kept."""

    def __init__(self, redis: RedisServer, *args: Any) -> None:
        super().__init__(*args)
        self.redis = redis

    def prepare(self, run: Run, bundle: ParsedBundle) -> Applied:
        applied = super().prepare(run, bundle)
        self.redis.stop()
        return applied


def test_redis_lost_after_prepare_undoes_the_prepared_peers(simulator: ClusterSimulator, inventory: Inventory,
                                                            service_env: dict[str, str],
                                                            redis_server: RedisServer) -> None:
    """The original pair cannot be kept (Redis is away): nothing is pushed, and what the companions
    already changed on their peers is undone, as for any failure from the first prepare on."""
    before = served_everywhere(simulator, CertName.PROXY)
    journal: list[tuple[str, str, frozenset[str]]] = []
    try:
        with pytest.raises(StoreUnavailable):
            rotate_with(inventory, StopsRedis(redis_server, "a", simulator, journal))
    finally:
        redis_server.start()
    assert hooks(journal) == [("a", "prepare"), ("a", "undo")]
    assert served_everywhere(simulator, CertName.PROXY) == before


def test_a_dry_run_only_plans(simulator: ClusterSimulator, inventory: Inventory, state_dir: Path) -> None:
    journal: list[tuple[str, str, frozenset[str]]] = []
    record = rotate_with(inventory, Probe("a", simulator, journal), dry_run=True)
    assert record.outcome is Outcome.DRY_RUN and journal == [] and not record.companions
    assert any(s.name == "plan" and "would touch peer a" in s.detail for s in record.steps)


def test_the_builders_of_a_proxy_rotation_share_one_read_of_the_cluster(
        simulator: ClusterSimulator, inventory: Inventory, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """OCSP's and replication's builders and the read step: one GET of /v1/cluster and of /v1/nodes."""
    asked: list[str] = []
    send = RSClient._request

    def counted(self: RSClient, method: str, path: str, **kwargs: Any) -> Any:
        asked.append(f"{method} {path}")
        return send(self, method, path, **kwargs)

    monkeypatch.setattr(RSClient, "_request", counted)
    (record,) = rotate_here(inventory, "sim", ["proxy"], RotationOptions(poll_interval=0.05, push_backoff=0.05))
    assert record.outcome is Outcome.VERIFIED, record.error
    assert "GET /v1/ocsp" in asked  # the OCSP companion was built: it needed the cluster's version
    assert asked.count("GET /v1/nodes") == 1 and asked.count("GET /v1/cluster") == 1, asked
