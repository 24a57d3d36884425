"""Linked simulated clusters (``rotation.simulator.fleet.Fleet``) with an inventory naming them."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from rotation.config import Inventory, load_inventory
from rotation.simulator.fleet import Fleet
from rotation.simulator.server import PortInUseError
from support.cluster import free_loopback_base


def fleet_inventory(path: Path, fleet: Fleet, ca_files: tuple[Path, Path], *, names: Sequence[str] | None = None,
                    verify_deadline: str = "3s") -> Path:
    """An inventory of ``names`` (default: every cluster of the fleet), issued by the internal CA."""
    clusters = {}
    for name, entry in fleet.inventory().items():
        if names is None or name in names:
            entry.update({"issuer": "internal", "verify_deadline": verify_deadline, "handshake_timeout": "2s",
                          "certificates": {"proxy": {}, "syncer": {}, "api": {}}})
            clusters[name] = entry
    data = {"renew_before": "30d", "clusters": clusters,
            "issuers": {"internal": {"type": "internal_ca", "ca_cert": str(ca_files[0]),
                                     "ca_key_file": str(ca_files[1]), "validity": "90d"}}}
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def linked_fleet(tmp_path: Path) -> Iterator[Any]:
    """``linked_fleet(["east", "west"], **kwargs) -> Fleet`` started on this worker's loopback ranges."""
    fleets: list[Fleet] = []

    def make(names: Sequence[str], **kwargs: Any) -> Fleet:
        # A port of a random range may be held by another program on the machine: take fresh ranges.
        for attempt in range(4):
            fleet = Fleet(list(names), state_dir=tmp_path / f"fleet{len(fleets)}-{attempt}",
                          first_addresses=[free_loopback_base() for _ in names], **kwargs)
            try:
                fleet.start()
            except PortInUseError:
                fleet.stop()
                if attempt == 3:
                    raise
                continue
            fleets.append(fleet)
            return fleet
        raise AssertionError("unreachable")

    yield make
    for fleet in fleets:
        fleet.stop()


def load_fleet_inventory(tmp_path: Path, fleet: Fleet, ca_files: tuple[Path, Path], **kwargs: Any) -> Inventory:
    return load_inventory(fleet_inventory(tmp_path / "fleet.yaml", fleet, ca_files, **kwargs))


class HandshakeMeter:
    """A fleet's ``connect_hook``: counts the handshakes held at once, per cluster and fleet-wide, and holds
    each one until ``gate`` of them are held at once fleet-wide (then lets every one through).

    The server counts a connection between its accept and the start of its handshake, a span inside
    the client's (its cap slot is taken before it connects and freed after the handshake), so the peak
    seen here never exceeds what the client had in flight. With a ``gate`` the peak reaches it exactly
    when the client keeps that many handshakes going: structure, not time. ``give_up`` only ends a
    hold when the client never gets there (the test then fails on the peak).
    """

    def __init__(self, gate: int, *, counted: Callable[[str], bool] = lambda listener: listener != "api",
                 give_up: float = 10.0) -> None:
        self.gate, self._counted, self._give_up = gate, counted, give_up
        self._lock = threading.Lock()
        self.held: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.total = self.peak_total = self.seen = 0
        self.open = False

    async def __call__(self, cluster: str, listener: str) -> None:
        if not self._counted(listener):  # the REST API's listener: REST reads are not handshakes to cap
            return
        with self._lock:
            self.seen += 1
            self.held[cluster] = self.held.get(cluster, 0) + 1
            self.total += 1
            self.peak[cluster] = max(self.peak.get(cluster, 0), self.held[cluster])
            self.peak_total = max(self.peak_total, self.total)
            self.open = self.open or self.total >= self.gate
        try:
            deadline = time.monotonic() + self._give_up
            while not self.open and time.monotonic() < deadline:
                await asyncio.sleep(0.002)  # each simulated cluster runs its own loop: poll the shared count
        finally:
            with self._lock:
                self.held[cluster] -= 1
                self.total -= 1
