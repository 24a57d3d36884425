"""SessionPool: a worker's REST clients outlive one scan, never one session's error or an edit.

Against the simulator over HTTPS; connections are counted where they land, on the node's API listener.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from rotation.adapters.cluster import SessionPool
from rotation.config import load_inventory
from rotation.core.errors import ClusterAuthError
from rotation.simulator import ClusterSimulator


@pytest.fixture
def pool() -> Iterator[SessionPool]:
    sessions = SessionPool()
    try:
        yield sessions
    finally:
        sessions.close()  # the idle clients' connections close with it


def test_back_to_back_sessions_reuse_the_client_and_its_connection(pool: SessionPool, inventory_path: Path,
                                                                    simulator: ClusterSimulator) -> None:
    inventory = load_inventory(inventory_path)
    before = simulator.accepted_connections(1, "api")
    with pool.open(inventory, "sim") as first:
        first.view(refresh=True)
        client = first.client
    with pool.open(inventory, "sim") as second:
        second.view(refresh=True)
        assert second.client is client
    assert simulator.accepted_connections(1, "api") - before == 1  # six requests, one TLS connection


def test_a_session_that_failed_does_not_give_its_client_back(pool: SessionPool, inventory_path: Path) -> None:
    inventory = load_inventory(inventory_path)
    with pytest.raises(RuntimeError), pool.open(inventory, "sim") as failed:
        failed.view(refresh=True)
        raise RuntimeError("mid-scan failure")
    with pool.open(inventory, "sim") as after:
        assert after.client is not failed.client
        after.view(refresh=True)
    assert failed.client._http.is_closed


def test_sessions_at_the_same_time_get_their_own_clients(pool: SessionPool, inventory_path: Path) -> None:
    inventory = load_inventory(inventory_path)
    clients, barrier = [], threading.Barrier(3)

    def scan() -> None:
        with pool.open(inventory, "sim") as session:
            barrier.wait(5)  # all three sessions are open at once
            session.view(refresh=True)
            clients.append(session.client)

    threads = [threading.Thread(target=scan) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len({id(c) for c in clients}) == 3


def test_an_edited_password_gets_a_new_client(pool: SessionPool, inventory_path: Path, simulator: ClusterSimulator,
                                              tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(simulator.admin_password + "\n")
    data = yaml.safe_load(inventory_path.read_text())
    data["clusters"]["sim"]["password_file"] = str(password_file)
    inventory_path.write_text(yaml.safe_dump(data))
    inventory = load_inventory(inventory_path)
    with pool.open(inventory, "sim") as session:
        session.view(refresh=True)
        old = session.client
    password_file.write_text("not-the-password\n")  # the same inventory object: only the file changed
    with pytest.raises(ClusterAuthError), pool.open(inventory, "sim") as session:
        assert session.client is not old
        session.view(refresh=True)
    assert old._http.is_closed
