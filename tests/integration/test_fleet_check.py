"""`rotation check` across a fleet in one event loop: the same answers as cluster by cluster, each REST
answer read once, and handshakes within the global cap and every cluster's own."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from support.clock import FakeClock
from support.fleet import HandshakeMeter

from rotation.adapters.cluster import open_cluster
from rotation.config import Inventory, load_inventory
from rotation.simulator.fleet import Fleet
from rotation.usecases.check import CheckReport, check_clusters
from rotation.usecases.scan import cluster_states

NAMES = ["east", "west", "north", "south"]


def _inventory(tmp_path: Path, fleet: Fleet, ca_files: tuple[Path, Path], certificates: list[str],
               concurrency: int = 16) -> Inventory:
    clusters = {}
    for name, entry in fleet.inventory().items():
        entry.update({"issuer": "internal", "handshake_timeout": "15s", "concurrency": concurrency,
                      "certificates": {cert: {} for cert in certificates}})
        clusters[name] = entry
    data = {"renew_before": "30d", "clusters": clusters,
            "issuers": {"internal": {"type": "internal_ca", "ca_cert": str(ca_files[0]),
                                     "ca_key_file": str(ca_files[1]), "validity": "90d"}}}
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_inventory(path)


def _merged(reports: list[CheckReport]) -> dict[str, Any]:
    """What cluster-by-cluster checks found, put together as one fleet check would show it."""
    merged: dict[str, Any] = {"rows": [], "errors": [], "coupled": {}, "links_unread": {}, "ocsp": []}
    for report in reports:
        data = report.to_dict()
        merged["rows"] += data["rows"]
        merged["errors"] += data["errors"]
        merged["coupled"].update(data["coupled"])
        merged["links_unread"].update(data["links_unread"])
        merged["ocsp"] += data["ocsp"]
    return merged


def test_the_fleet_check_finds_what_cluster_by_cluster_checks_find(linked_fleet: Any, ca_files: tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
    fleet = linked_fleet(NAMES, nodes=2)
    fleet.replica_of("east", "west")  # west db1 replicates east db1: east's proxy and west's syncer are coupled
    fleet.crdb(["west", "north"])
    fleet.cluster_down("south")
    inventory = _inventory(tmp_path, fleet, ca_files, ["proxy", "syncer", "api", "cm"])
    clock = FakeClock(datetime.now(UTC))
    before = {name: {path: fleet[name].rest_requests(path) for path in ("/v1/cluster", "/v1/bdbs", "/v1/crdbs")}
              for name in NAMES if name != "south"}

    report = check_clusters(inventory, NAMES, clock)

    read = {name: {path: fleet[name].rest_requests(path) - count for path, count in paths.items()}
            for name, paths in before.items()}
    one_by_one = _merged([check_clusters(inventory, [name], clock) for name in NAMES])
    found = report.to_dict()
    for key in ("rows", "errors", "coupled", "links_unread", "ocsp"):
        assert found[key] == one_by_one[key], key
    assert found["coupled"] and "east/proxy" in found["coupled"]  # the coupling was computed
    assert len(found["errors"]) == 1 and "south" in found["errors"][0] and set(found["links_unread"]) == {"south"}
    # Every REST answer read once per cluster; /v1/crdbs only where a database belongs to an Active-Active one.
    assert read == {"east": {"/v1/cluster": 1, "/v1/bdbs": 1, "/v1/crdbs": 0},
                    "west": {"/v1/cluster": 1, "/v1/bdbs": 1, "/v1/crdbs": 1},
                    "north": {"/v1/cluster": 1, "/v1/bdbs": 1, "/v1/crdbs": 1}}
    # An independent path: the scan's own reading of each reachable cluster serves the same certificates.
    for name in ("east", "west", "north"):
        with open_cluster(inventory, name) as session:
            scanned = {(str(s.cert_name), e.endpoint.label, e.fingerprint)
                       for s in cluster_states(inventory, session, clock) for e in s.served}
        assert scanned == {(str(s.cert_name), e.endpoint.label, e.fingerprint)
                           for s in report.states if s.cluster == name for e in s.served}


def test_a_check_outside_the_named_clusters_reads_their_links_only(linked_fleet: Any, ca_files: tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
    fleet = linked_fleet(["east", "west"])
    fleet.replica_of("east", "west")
    inventory = _inventory(tmp_path, fleet, ca_files, ["proxy", "syncer"])
    probes_before = fleet["west"].accepted_connections(1, "db:1")

    report = check_clusters(inventory, ["east"])

    assert {s.cluster for s in report.states} == {"east"}
    assert "east/proxy" in report.coupled  # seen from west, the replica, whose links were read
    assert fleet["west"].accepted_connections(1, "db:1") == probes_before  # no handshake on west


def test_handshakes_across_the_fleet_stay_within_the_global_cap(linked_fleet: Any, ca_files: tuple[Path, Path],
                                                                tmp_path: Path) -> None:
    meter = HandshakeMeter(gate=8)
    fleet = linked_fleet(NAMES, nodes=3, connect_hook=meter)
    inventory = _inventory(tmp_path, fleet, ca_files, ["cm", "metrics_exporter", "proxy"], concurrency=3)

    told: list[tuple[int, int]] = []
    report = check_clusters(inventory, NAMES, global_cap=8, progress=lambda done, total: told.append((done, total)))

    assert not report.errors and all(str(s.health) == "ok" for s in report.states)
    # progress: every cluster read and every handshake counted, ending done == total
    assert told[0] == (0, 4) and told[-1] == (4 + 48, 4 + 48) and all(d <= t for d, t in told)
    assert meter.seen == 4 * 3 * 4  # 3 nodes x (cm, metrics_exporter, 2 databases) per cluster
    assert meter.peak_total == 8  # held until 8 were in flight at once, never more
    assert all(peak <= 3 for peak in meter.peak.values()), meter.peak


def test_every_cluster_handshakes_at_once_under_its_own_cap(linked_fleet: Any, ca_files: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    # Held until all four clusters have their three in flight together: one loop, clusters concurrent.
    meter = HandshakeMeter(gate=4 * 3)
    fleet = linked_fleet(NAMES, nodes=3, connect_hook=meter)
    inventory = _inventory(tmp_path, fleet, ca_files, ["cm", "metrics_exporter", "proxy"], concurrency=3)

    report = check_clusters(inventory, NAMES)

    assert not report.errors
    assert meter.peak_total == 12
    assert meter.peak == dict.fromkeys(NAMES, 3)
