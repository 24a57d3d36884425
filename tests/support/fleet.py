"""Linked simulated clusters (``rotation.simulator.fleet.Fleet``) with an inventory naming them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
