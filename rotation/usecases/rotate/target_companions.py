"""Companions of the targets that are not cluster slots (the slots' are chosen in ``companion_set``):
the tool's own client certificate takes the client CA along when the inventory lets it manage
``mtls_trusted_ca`` (``rest_client.manage_trusted_ca``; see ``client_ca``)."""

from __future__ import annotations

from rotation.adapters.cluster import ClusterSession
from rotation.config import Inventory
from rotation.core.targets import REST_CLIENT
from rotation.usecases.context import ServiceContext
from rotation.usecases.rotate.companions import Companion


def target_companions(ctx: ServiceContext, inventory: Inventory, session: ClusterSession,
                      name: str) -> tuple[Companion, ...]:
    settings = session.settings.rest_client
    if name != REST_CLIENT or settings is None or not settings.manage_trusted_ca:
        return ()
    from rotation.usecases.rotate.client_ca import ClientCA  # with the login checks: only when it applies

    issuer = inventory.plan(session.name, name).issuer
    anchors = ctx.issuers.issuer(inventory, issuer).trust_anchors() if issuer else []
    return (ClientCA(session, anchors),)


__all__ = ["target_companions"]
