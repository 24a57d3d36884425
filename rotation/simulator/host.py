"""What the REST handlers and the simulator's services see of the running simulator.

A protocol, so that they need not import the server that runs them (``server.ClusterSimulator``
imports them, and is the one implementation). The cluster's data is typed; the services a handler
reaches through it (replication, OCSP, Active-Active, accounts...) are typed where they are defined.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from .cluster import ClusterState, SimulatorConfig
from .nodes import Database
from .tls import CertificateAuthority

T = TypeVar("T")


class Simulator(Protocol):
    config: SimulatorConfig
    state: ClusterState
    ca: CertificateAuthority
    # the services, each owned by the server (their own modules type them)
    accounts: Any
    replication: Any
    ocsp: Any
    crdbs: Any
    slots: Any
    database_certs: Any
    cert_login: Any
    _loop: asyncio.AbstractEventLoop | None
    _tasks: set[asyncio.Task[Any]]

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the simulator's event loop and return its result (from any thread)."""
        ...

    def _run(self, coro: Any) -> None: ...

    def _database(self, kind: str) -> Database: ...

    async def apply_fault(self, action: str, **kwargs: Any) -> None: ...


__all__ = ["Simulator"]
