"""Rotating in the test's process, the way ``rotation rotate --inline`` does: the one rotate-and-record path."""

from __future__ import annotations

from collections.abc import Sequence

from rotation.config import Inventory
from rotation.core.model import RotationRecord
from rotation.usecases.context import ServiceContext
from rotation.usecases.rotate.record import rotate_and_record
from rotation.usecases.rotate.run import RotationOptions


def rotate_here(inventory: Inventory, cluster: str, cert_names: Sequence[str], options: RotationOptions,
                ctx: ServiceContext | None = None) -> list[RotationRecord]:
    """Each certificate after the other, with ``ctx``'s state (default: the environment's) and ``inventory``."""
    own = ctx is None
    ctx = ctx or ServiceContext(inventory=lambda: inventory)
    try:
        return [rotate_and_record(ctx, cluster, name, options).record for name in cert_names]
    finally:
        # as the CLI's context does at its end: no client left open (a caller's context keeps its state)
        if own:
            ctx.close()
        else:
            ctx.sessions.close()
