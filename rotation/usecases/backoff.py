"""`rotation retry`: clear a certificate's backoff after failures, so the next scan may rotate it."""

from __future__ import annotations

from typing import Any

from rotation.usecases.context import ServiceContext


def clear_backoff(ctx: ServiceContext, cluster: str, cert_name: str) -> dict[str, Any]:
    """`rotation retry`: forget the failures of one certificate so the next scan may rotate it."""
    plan = ctx.inventory().plan(cluster, cert_name)  # ConfigError for names the inventory does not know
    return ctx.state.clear_backoff(cluster, str(plan.cert_name))


__all__ = ["clear_backoff"]
