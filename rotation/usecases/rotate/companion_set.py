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

CompanionBuilder = Callable[[ServiceContext, Inventory, ClusterSession, CertName], Companion | None]


# The builders' modules (and the coupling graph, replication steps, OCSP checks they bring) are imported
# only for a certificate they may apply to: most rotations, neither proxy nor syncer, never load them.
def ocsp_companion(ctx: ServiceContext, inventory: Inventory, session: ClusterSession,
                   cert_name: CertName) -> Companion | None:
    if cert_name is not CertName.PROXY:  # stapled: the proxy certificate alone
        return None
    from rotation.usecases.rotate import ocsp

    return ocsp.ocsp_companion(ctx, inventory, session, cert_name)


def replication_companion(ctx: ServiceContext, inventory: Inventory, session: ClusterSession,
                          cert_name: CertName) -> Companion | None:
    if not cert_name.is_coupled:
        return None
    from rotation.usecases.rotate import replication

    return replication.replication_companion(ctx, inventory, session, cert_name)


# OCSP first: its follow-up (the responder's answer) can refuse the new proxy before any peer pins it.
BUILDERS: tuple[CompanionBuilder, ...] = (ocsp_companion, replication_companion)


# Built before the others (the tuple's order above still rules prepare and follow-up): the replication
# builder reads the cluster's view with its links in one go, which OCSP's version check then reuses
# instead of a ``GET /v1/nodes`` of its own.
BUILD_FIRST: tuple[CompanionBuilder, ...] = (replication_companion,)


def companions_for(ctx: ServiceContext, inventory: Inventory, session: ClusterSession,
                   cert_name: CertName) -> tuple[Companion, ...]:
    order = sorted(range(len(BUILDERS)), key=lambda index: BUILDERS[index] not in BUILD_FIRST)
    built = {index: BUILDERS[index](ctx, inventory, session, cert_name) for index in order}
    return tuple(companion for index in range(len(BUILDERS)) if (companion := built[index]) is not None)


__all__ = ["BUILDERS", "CompanionBuilder", "companions_for"]
