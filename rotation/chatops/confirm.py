"""Single-use confirmation nonces for dangerous commands (``rotate … all``, ``confirm: true`` clusters).

The nonce is random (128 bits), stored in Redis under its SHA-256 with ``SET NX EX ttl`` and the
command, the user (platform, team, id), the channel it was asked in and an expiry; redeeming is
``GETDEL``, so a second click, whoever makes it, finds nothing. A click by someone else, or from
another channel, consumes the nonce too and is refused: a confirmation is never transferable.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rotation.chatops.authz import Caller
from rotation.chatops.grammar import Rotate
from rotation.core.errors import RotationError
from rotation.core.targets import target_name

PREFIX = "rotation:chatops:nonce:"


class ConfirmationError(RotationError):
    """The nonce is unknown, used, expired, or belongs to someone else."""


@dataclass(frozen=True)
class Pending:
    command: Rotate
    caller: Caller
    expires_at: datetime


def _key(nonce: str) -> str:
    return PREFIX + hashlib.sha256(nonce.encode()).hexdigest()


class Confirmations:
    """Nonces in Redis. ``client`` is a ``redis.asyncio.Redis`` with ``decode_responses=True``."""

    def __init__(self, client: Any, ttl: timedelta) -> None:
        self.redis = client
        self.ttl = ttl

    async def issue(self, command: Rotate, caller: Caller, now: datetime) -> str:
        for _ in range(3):
            nonce = secrets.token_urlsafe(16)
            data = {
                "cluster": command.cluster, "certs": [str(c) for c in command.certs], "dry_run": command.dry_run,
                "platform": caller.platform, "user": caller.user, "team": caller.team, "channel": caller.channel,
                "expires_at": (now + self.ttl).isoformat(),
            }
            seconds = max(1, int(self.ttl.total_seconds()))
            if await self.redis.set(_key(nonce), json.dumps(data), nx=True, ex=seconds):
                return nonce
        raise ConfirmationError("could not store a confirmation")  # three collisions of 128 random bits

    async def redeem(self, nonce: str, caller: Caller, now: datetime) -> Pending:
        """Consume the nonce. ConfirmationError unless it is live and ``caller`` is its owner."""
        raw = await self.redis.getdel(_key(nonce)) if nonce else None
        if not raw:
            raise ConfirmationError("this confirmation has expired or was already used")
        data = json.loads(raw)
        expires_at = datetime.fromisoformat(data["expires_at"])
        if now > expires_at:
            raise ConfirmationError("this confirmation has expired")
        owner = (data["platform"], data.get("team"), data["user"])
        if owner != (caller.platform, caller.team, caller.user):
            raise ConfirmationError("this confirmation belongs to someone else")
        if data.get("channel") != caller.channel:
            raise ConfirmationError("this confirmation was asked in another channel: confirm it there")
        command = Rotate(data["cluster"], tuple(target_name(c) for c in data["certs"]), dry_run=data["dry_run"])
        return Pending(command, caller, expires_at)


__all__ = ["ConfirmationError", "Confirmations", "Pending"]
