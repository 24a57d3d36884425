"""The simulated cluster's parts: databases, nodes and what each node presents per certificate name."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .tls import Material


@dataclass(frozen=True)
class Database:
    """A database endpoint: TLS ones present ``proxy``; ``single`` binds only node 1."""

    uid: int
    name: str
    port: int
    tls: bool = True
    proxy_policy: str = "all-nodes"


DEFAULT_DATABASES: tuple[Database, ...] = (
    Database(1, "db1", 12000, True, "all-nodes"),
    Database(2, "db2", 12001, True, "single"),
    Database(3, "plain", 12002, False, "all-nodes"),
)


class CertSlot:
    """What one node presents for one certificate name; ``pending`` models a stale worker."""

    def __init__(self, material: Material) -> None:
        self.current = material
        self.pending: Material | None = None
        self.switch_at: float | None = None  # monotonic; None with a pending cert = until cleared

    def effective(self) -> Material:
        if self.pending is not None and self.switch_at is not None and time.monotonic() >= self.switch_at:
            self.release()
        return self.current

    def put(self, material: Material, hold_for: float | None, hold: bool) -> None:
        if not hold:
            self.current, self.pending, self.switch_at = material, None, None
            return
        self.pending = material
        self.switch_at = None if hold_for is None else time.monotonic() + hold_for

    def release(self) -> None:
        if self.pending is not None:
            self.current = self.pending
        self.pending, self.switch_at = None, None


@dataclass
class NodeState:
    uid: int
    addr: str
    hostname: str
    certs: dict[str, CertSlot]
    down: bool = False
    started: float = field(default_factory=time.monotonic)
    # listener ("api", "cm", "metrics_exporter", "proxy", "db:<uid>", "sentinel") -> planted TLS settings
    tls_overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    # what the node's sentinel_service runs with: read from the settings at start and restart only
    sentinel: dict[str, str] = field(default_factory=dict)

    def served(self, name: str) -> Material:
        return self.certs[name].effective()
