"""`rotation history`: rotation records, newest first, and the chat commands (`--audit`)."""

from __future__ import annotations

from typing import Any

from rotation.core.model import RotationRecord
from rotation.usecases.context import ServiceContext


def rotation_history(ctx: ServiceContext, cluster: str | None = None, cert_name: str | None = None,
                     limit: int = 50) -> list[RotationRecord]:
    return ctx.state.history(cluster, cert_name, limit)


def chat_commands(ctx: ServiceContext, limit: int = 50, cluster: str | None = None) -> list[dict[str, Any]]:
    """The chat audit trail: every authenticated command, allowed or refused, newest first."""
    return ctx.state.chat_commands(limit, cluster)


__all__ = ["chat_commands", "rotation_history"]
