"""The webhook's inventory and chat secrets, reloaded when the file changes (a broken edit keeps the old)."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from rotation.adapters.clock import SYSTEM_CLOCK
from rotation.chatops import AllowList
from rotation.config import Inventory, load_inventory
from rotation.core.clock import Clock
from rotation.core.errors import RotationError

log = logging.getLogger("rotation.webhook")


@dataclass(frozen=True)
class Snapshot:
    inventory: Inventory
    allow: AllowList
    slack_secret: str | None = field(repr=False)  # secrets: never in a repr
    mattermost_token: str | None = field(repr=False)
    generic_secret: str | None = field(repr=False)

    @classmethod
    def load(cls, path: Path) -> Snapshot:
        inventory = load_inventory(path)
        chat = inventory.chatops
        return cls(
            inventory=inventory,
            allow=AllowList.from_settings(chat.allow),
            slack_secret=chat.slack.signing_secret() if chat.slack else None,
            mattermost_token=chat.mattermost.token() if chat.mattermost else None,
            generic_secret=chat.generic.secret() if chat.generic else None,
        )

    def platforms(self) -> dict[str, bool]:
        """Which chat platforms this inventory enables (each with a secret that passed its checks)."""
        return {"slack": self.slack_secret is not None, "mattermost": self.mattermost_token is not None,
                "generic": self.generic_secret is not None}


class InventoryWatcher:
    """One stat per ``every`` seconds at most (not one per request); a reload only when the mtime
    changed. A broken edit keeps the old one."""

    def __init__(self, path: Path, every: float = 1.0, clock: Clock = SYSTEM_CLOCK) -> None:
        self.path = path
        self.every = every
        self.clock = clock
        self._lock = threading.Lock()
        self._mtime = self._stat()
        self._next_stat = clock.monotonic() + every
        self._snapshot = Snapshot.load(path)  # at startup a bad inventory is fatal

    def _stat(self) -> int:
        try:
            return os.stat(self.path).st_mtime_ns
        except OSError:
            return -1

    def current(self) -> Snapshot:
        now = self.clock.monotonic()
        if now < self._next_stat:
            return self._snapshot
        self._next_stat = now + self.every
        mtime = self._stat()
        if mtime != self._mtime:
            with self._lock:
                if mtime != self._mtime:
                    try:
                        self._snapshot = Snapshot.load(self.path)
                        log.info("inventory %s reloaded", self.path)
                    except RotationError as exc:
                        log.error("inventory %s not reloaded, keeping the previous one: %s", self.path, exc.message)
                    self._mtime = mtime
        return self._snapshot


__all__ = ["InventoryWatcher", "Snapshot"]
