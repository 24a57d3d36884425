"""A real stand-in for a Redis Enterprise Software cluster: TLS listeners, REST API, faults.

A LEAF package: stdlib asyncio/ssl plus ``cryptography`` (and ``yaml`` for the CLI); it imports
nothing else from ``rotation`` and nothing in the domain imports it.

::

    from rotation.simulator import ClusterSimulator, SimulatorConfig

    with ClusterSimulator(SimulatorConfig(first_address="127.0.10.1", state_dir=tmp)) as sim:
        sim.served_fingerprint(1, "api")
        sim.fail_next(1, 409); sim.node_down(2); sim.stale(3, seconds=2, cert_name="proxy")
        sim.log_requests(); sim.fail_nth(4, "reset")  # the 4th REST request from now: done, never answered

Per node (addresses ``first_address``, +1, +2, ...): ``api_port`` (REST API, presents ``api``),
``cm_port`` (HTML page, ``cm``), ``metrics_port`` (Prometheus text, ``metrics_exporter``) and a
listener per database port (``proxy`` if TLS, plain RESP otherwise). ``syncer`` is never served.
The discovery service (``sentinel_port``, 8001) speaks TLS and/or plain RESP per
``sentinel_tls_mode`` and presents ``sentinel_cert`` (default ``proxy``); it reads its settings
only at start and on ``sim.restart_sentinel(uid)``. Control listeners enforce
``min_control_TLS_version`` + ``control_cipher_suites``, database listeners ``min_data_TLS_version``
+ ``data_cipher_list``, for real (OpenSSL refuses); ``sim.override_node_tls(uid, listener, ...)``
plants a node that disagrees. The REST routes and their error codes are listed in
:mod:`rotation.simulator.api` (``PUT /v1/cluster`` rules: :mod:`rotation.simulator.policy`).

Today's CAs (issue 14), all opt-in or gated by ``version``: upload rules per certificate name
(``cert_profile`` ``none`` / ``as-documented``, INE clientAuth + RSA from 7.22.2-79 / 8.0.10-64,
key type vs ciphers from 8.2.0-25, ``ldap_client`` through the bulk PUT only) in
:mod:`.profile`; RS's own INE certificates, the INE fallback 5 days before expiry and names the
product may not know (``sim.plant_certificate``) in :mod:`.slots`; ``/v1/ocsp*`` with real OCSP
queries in :mod:`.ocsp` (stapling itself is not simulated: Python's ``ssl`` cannot staple);
``GET /v4/cluster/health`` (8.0.16+) in :mod:`.health`. ``sim.issue_certificate(LeafSpec(...))``
issues 2026-shaped certificates from the cluster CA (no CN, serverAuth only, an OCSP URL, ...).
Opt-in, by version profile: certificate (mTLS) login to the REST API (7.8.4+), Basic turned off
(8.2.0+), users and JWTs (:mod:`~rotation.simulator.auth`, :mod:`~rotation.simulator.users`);
per-database certificates served on each database's own endpoint (8.0.2+,
:mod:`~rotation.simulator.bdb_routes`)::

    login = sim.cert_login.enable("CN=rotation,OU=ops,O=rotation", basic=False)  # client cert files
    sim.cert_login.rladmin("tune cluster control_plane_basic_authentication enabled")  # break glass
    sim.inventory_entry("lab", login="certificate")  # client_cert_file / client_key_file
    sim.database_certs.install(1); sim.database_certs.stale(2, seconds=2, bdb_uid=1)

Replication between simulated clusters (opt-in, nothing changes without links): a database
may list trusted client certificates (``authentication_ssl_client_certs``; its listener then
asks for one) and replicate from other clusters' databases (``replica_sources``, Replica Of;
``crdt_sources``, Active-Active). The cluster's syncer really reconnects over TLS, presenting
its ``syncer`` certificate and pinning the source's ``server_cert``; the link status in
``GET /v1/bdbs[/{uid}]`` comes from those handshakes (:mod:`.replication`, :mod:`.links`,
routes in :mod:`.bdb_api`). Active-Active databases, their tasks and the force update that
refreshes every participant's view over HTTPS: :mod:`.crdb` (routes in :mod:`.crdb_api`).
Several linked clusters for tests and demos: :class:`rotation.simulator.fleet.Fleet`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Loaded on first use, like ``rotation``'s own names: ``rotation simulator --help`` (and anything
# importing one submodule, such as ``.versions``) does not start the whole server.
_EXPORTS = {
    "DEFAULT_DATABASES": ".nodes",
    "ClusterSimulator": ".server",
    "Database": ".nodes",
    "LeafSpec": ".tls",
    "PortInUseError": ".server",
    "SimulatorConfig": ".cluster",
    "SimulatorError": ".server",
    "version_tuple": ".versions",
}

if TYPE_CHECKING:
    from .cluster import SimulatorConfig
    from .nodes import DEFAULT_DATABASES, Database
    from .server import ClusterSimulator, PortInUseError, SimulatorError
    from .tls import LeafSpec
    from .versions import version_tuple


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # the next access skips this function
    return value

__all__ = [
    "DEFAULT_DATABASES",
    "ClusterSimulator",
    "Database",
    "LeafSpec",
    "PortInUseError",
    "SimulatorConfig",
    "SimulatorError",
    "version_tuple",
]
