"""Which companions a rotation takes: each builder looks at (context, inventory, session, certificate)
and returns its companion, or None when its concern does not apply (no OCSP stapling, no peer).

A new concern adds its builder to :data:`BUILDERS`; the order of the tuple is the order of their
``prepare`` and ``follow_up`` (undo runs newest first).
"""

from __future__ import annotations

from collections.abc import Callable

from rotation.adapters.cluster import ClusterSession
from rotation.config import Inventory
from rotation.core.model import CertName
from rotation.usecases.context import ServiceContext
from rotation.usecases.rotate.companions import Companion
from rotation.usecases.rotate.ocsp import ocsp_companion
from rotation.usecases.rotate.replication import replication_companion

CompanionBuilder = Callable[[ServiceContext, Inventory, ClusterSession, CertName], Companion | None]

# OCSP first: its follow-up (the responder's answer) can refuse the new proxy before any peer pins it.
BUILDERS: tuple[CompanionBuilder, ...] = (ocsp_companion, replication_companion)


def companions_for(ctx: ServiceContext, inventory: Inventory, session: ClusterSession,
                   cert_name: CertName) -> tuple[Companion, ...]:
    built = (builder(ctx, inventory, session, cert_name) for builder in BUILDERS)
    return tuple(companion for companion in built if companion is not None)


__all__ = ["BUILDERS", "CompanionBuilder", "companions_for"]
