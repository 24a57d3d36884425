"""Where ``api`` is looked for: the nodes' REST port, which GET /v1/cluster says (``cnm_https_port``).

Sheet redis-enterprise-api.md §1.2 / §4.1: every node serves the REST API on ``cnm_https_port`` (9443 by
default, configurable). The inventory's ``url`` may reach it through a load balancer or a port forward on
another port; the ``api`` endpoints of the nodes were probed on that port, so every node was unreachable.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from support.cluster import write_inventory

from rotation.adapters.cluster import open_cluster
from rotation.config import load_inventory
from rotation.core.model import CertName
from rotation.simulator import ClusterSimulator


@contextmanager
def port_forward(host: str, port: int) -> Iterator[int]:
    """A load balancer's stand-in: 127.0.0.1:<free port> relays each connection to ``host:port``."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection((host, port), timeout=5)
            upstream.settimeout(None)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()


def test_api_is_probed_on_the_rest_port_the_cluster_names_not_the_urls(
    tmp_path: Path, simulator: ClusterSimulator, ca_files: tuple[Path, Path]
) -> None:
    cfg = simulator.config
    with port_forward(simulator.node_addresses[0], cfg.api_port) as port:
        path = write_inventory(tmp_path / "inv.yaml", simulator, ca_files)
        data = yaml.safe_load(path.read_text())
        data["clusters"]["sim"]["url"] = f"https://127.0.0.1:{port}"
        del data["clusters"]["sim"]["ports"]["api"]  # not configured: the cluster says where
        path.write_text(yaml.safe_dump(data))
        with open_cluster(load_inventory(path), "sim") as session:
            served = session.served(CertName.API)
    assert {s.endpoint.port for s in served} == {cfg.api_port}
    assert [s.error for s in served if not s.ok] == []
    assert {s.fingerprint for s in served} == {simulator.served_fingerprint(1, "api")}
