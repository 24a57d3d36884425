"""One process's wiring: the inventory, the service's state, the secrets, the REST sessions, the clock.

``ServiceContext`` is built once per process (a worker, the webhook, a CLI command) and handed to
the use cases; the state it opens is Redis for the service or local files with
``ROTATION_STORE=local`` (``rotation.adapters.state.open_state``). ``preflight`` is what the
worker, beat and webhook check before they start: a process that cannot do its work refuses to
start (exit 2) instead of taking tasks it would leave half-recorded.

Each part is built when first used, and its adapter imported then: `rotation rotate` through the
queue never loads the REST client, TLS probes or issuers, and no CLI command loads what it does not use.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rotation.adapters.clock import SYSTEM_CLOCK
from rotation.config import Inventory, ServiceSettings, load_inventory, resolve_config_path
from rotation.core.clock import Clock
from rotation.core.errors import ConfigError, RotationError

if TYPE_CHECKING:
    from rotation.adapters.cluster import SessionPool
    from rotation.adapters.issuers.factory import IssuerFactory
    from rotation.adapters.secrets import SecretBox, SecretStore
    from rotation.adapters.state import ServiceState
    from rotation.usecases.coupling import IsolatedLinks

log = logging.getLogger(__name__)

_Stamp = tuple[Path, int | None]


# The digests of the last inventories seen, by identity (an inventory is frozen): a worker compares
# its own with every rotation's, and dumping a whole inventory to JSON costs more than a REST call.
_DIGESTS: dict[int, tuple[Inventory, str]] = {}
_DIGESTS_KEEP = 8
_DIGESTS_LOCK = threading.Lock()


def inventory_digest(inventory: Inventory) -> str:
    """Identifies an inventory by content (paths resolved): the CLI and a worker compare theirs."""
    known = _DIGESTS.get(id(inventory))
    if known is not None and known[0] is inventory:  # held here, so its id is not reused meanwhile
        return known[1]
    digest = hashlib.sha256(inventory.model_dump_json().encode()).hexdigest()[:16]
    with _DIGESTS_LOCK:
        if len(_DIGESTS) >= _DIGESTS_KEEP:
            del _DIGESTS[next(iter(_DIGESTS))]  # the oldest
        _DIGESTS[id(inventory)] = (inventory, digest)
    return digest


class ServiceContext:
    """Storage, locks and secrets for one process, chosen once from ServiceSettings."""

    def __init__(self, settings: ServiceSettings | None = None, config_path: str | Path | None = None, *,
                 inventory: Callable[[], Inventory] | None = None, redis: Any = None,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        """``inventory`` replaces reading ``config_path`` (the webhook's watched copy); ``redis`` the
        client made from the settings (the webhook's, with its short timeouts)."""
        self.settings = settings or ServiceSettings.from_env()
        self.config_path = config_path
        self.clock = clock
        self._inventory_source = inventory
        self._inventory_cache: tuple[_Stamp, Inventory] | None = None
        self._broken: _Stamp | None = None  # the edit that did not load (reported once)
        if redis is not None:
            self.__dict__["redis"] = redis  # the cached property's value

    def inventory(self) -> Inventory:
        """The inventory, re-read whenever the file changes (edits apply without a restart). An edit
        that does not load keeps the last good inventory: logged once, and shown by `rotation status`."""
        if self._inventory_source is not None:
            return self._inventory_source()
        path = resolve_config_path(self.config_path)
        try:
            stamp: _Stamp = (path, path.stat().st_mtime_ns)
        except OSError:
            stamp = (path, None)  # let load_inventory say what is wrong
        cached = self._inventory_cache
        if cached is not None and stamp[1] is not None and stamp in (cached[0], self._broken):
            return cached[1]
        try:
            inventory = load_inventory(path)
        except ConfigError as exc:
            if cached is None or cached[0][0] != path:
                raise  # no good inventory to keep
            if self._broken != stamp:
                self._broken = stamp
                log.error("%s changed but does not load; keeping the last good inventory: %s", path, exc.message)
                self._note_inventory(path, exc.message, cached[0])
            return cached[1]
        if self._broken is not None:
            log.warning("%s loads again", path)
            self._note_inventory(path, None, stamp)
        self._broken = None
        self._inventory_cache = (stamp, inventory)
        return inventory

    def _note_inventory(self, path: Path, problem: str | None, good: _Stamp | None = None, *,
                        strict: bool = False) -> None:
        """Tell `rotation status` (through the state) that this host runs on an older inventory, or not any more.
        ``strict``: a state that does not take it raises (at start: a read-only replica answers PING)."""
        host = f"{socket.gethostname()}:{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]}"
        note = None
        if problem:
            loaded = datetime.fromtimestamp(((good and good[1]) or 0) / 1e9, UTC).isoformat(timespec="seconds")
            note = {"path": str(path), "host": socket.gethostname(), "error": problem, "kept_from": loaded,
                    "since": self.clock.now().isoformat(timespec="seconds")}
        try:
            self.state.note_inventory(host, note)
        except RotationError as exc:
            if strict:
                raise
            log.warning("could not record the inventory problem in the service's state: %s", exc.message)

    def close(self) -> None:
        """Close what this context opened and keeps (the REST sessions' clients, its Redis client): a one-shot
        process (a CLI command) ends with it; a worker keeps its context for its whole life."""
        if "sessions" in self.__dict__:
            self.sessions.close()
        if "redis" in self.__dict__:
            self.redis.close()  # its sockets (the state's, the locks'): a later call would connect again

    def __enter__(self) -> ServiceContext:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @cached_property
    def sessions(self) -> SessionPool:
        """REST clients reused by this process's scans and rotations (a worker works on the same clusters all day)."""
        from rotation.adapters.cluster import SessionPool

        return SessionPool()

    @cached_property
    def isolated_links(self) -> IsolatedLinks:
        """Replication links of clusters that have none, reused for a few seconds by this process's rotations."""
        from rotation.usecases.coupling import IsolatedLinks

        return IsolatedLinks(self.clock)

    @cached_property
    def redis(self) -> Any:
        """The service's Redis client (the state's, the broker's host): chat replies and the webhook use it too."""
        from rotation.adapters.state.redis_client import connect

        return connect(self.settings.redis_url)

    @cached_property
    def state(self) -> ServiceState:
        """Everything the service remembers (``rotation.adapters.state``), chosen once from the settings."""
        from rotation.adapters.state import open_state

        return open_state(self.settings, self.clock, lambda: self.redis)

    @cached_property
    def issuers(self) -> IssuerFactory:
        """Issuers built once per inventory entry (rebuilt when it, its secrets or its files change)."""
        from rotation.adapters.issuers.factory import IssuerFactory

        return IssuerFactory(lambda: self.secrets, self.clock)

    @cached_property
    def secret_box(self) -> SecretBox:
        """The service's encryption key(s); ConfigError when none is configured."""
        from rotation.adapters.secrets import SecretBox

        return SecretBox.configured(state_dir=self.state.local_key_dir)

    @cached_property
    def secrets(self) -> SecretStore:
        return self.state.secret_store(self.secret_box)


def preflight(ctx: ServiceContext) -> Inventory:
    """What a worker, beat or webhook needs before it may start: an inventory that loads, Redis, and a
    valid ROTATION_SECRET_KEY (a RotationError naming the problem). Clusters whose password this environment
    cannot read are only warned about: their rotations end `failed` with that reason."""
    inventory = ctx.inventory()
    ctx.state.ping()  # Redis unreachable: one line naming the URL
    ctx.secret_box.encrypt(b"preflight")  # a key that is set but not a Fernet key fails here, not per task
    # it loads: drop this host's old note; a write, so a Redis that takes none stops the start too
    ctx._note_inventory(resolve_config_path(ctx.config_path), None, strict=True)
    for name, cluster in inventory.clusters.items():
        try:
            cluster.basic_credentials(name)
            cluster.client_certificate(name)
        except ConfigError as exc:
            log.warning("%s; rotations of %s will fail until it is set", exc.message, name)
    return inventory


__all__ = ["ServiceContext", "inventory_digest", "preflight"]
