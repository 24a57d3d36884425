"""`rotation status` and chat's `status`: the service's view of every certificate, read from its state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rotation.core.budget import IssuanceBudget
from rotation.core.durations import format_duration
from rotation.core.errors import ConfigError
from rotation.core.renewal import backoff_holds
from rotation.usecases.context import ServiceContext


def _short_time(value: str | None) -> str | None:
    if not value:
        return None
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")


def _lock_holders(ctx: ServiceContext, states: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], str]:
    """Who holds each (cluster, cert) lock; locks are keyed by the cluster's identity (its REST URL) and the
    name the rotation locks (a database's: RS's name for it, which the scan kept: ``db:7`` locks ``db:orders``)."""
    try:
        clusters = ctx.inventory().clusters
    except ConfigError:
        return {}  # no inventory here: the rotations in flight still show through their pending markers
    keyed: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for (name, cert), state in states.items():
        if name in clusters:
            keyed.setdefault((clusters[name].identity, str(state.get("lock_name") or cert)), []).append((name, cert))
    return {pair: holder for key, holder in ctx.state.lock_holders(list(keyed)).items() for pair in keyed[key]}


def _backoff(state: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    """Why and until when a certificate is skipped by the scans (`rotation retry` clears it); None once
    that moment has passed, or when it would outlast the certificate (the scans no longer skip it:
    ``core.renewal.decide``)."""
    if not state.get("next_attempt") or not backoff_holds(datetime.fromisoformat(state["next_attempt"]),
                                                          _earliest(state), now):
        return None
    return {"until": _short_time(state["next_attempt"]), "failures": int(state.get("failures") or 0),
            "reason": state.get("last_error") or "", "clear_with": "rotation retry CLUSTER CERT"}


def _earliest(state: dict[str, Any]) -> datetime | None:
    """The earliest notAfter the last scan saw served."""
    return min((datetime.fromisoformat(v) for v in (state.get("not_after") or {}).values()), default=None)


def issuer_budgets(ctx: ServiceContext, now: datetime) -> list[dict[str, Any]]:
    """Per issuer budget (``core.budget``): orders left in the window, and until when it waits (spent, or
    paused by the CA). The inventory's issuers (one row per CA account), or without an inventory, what the
    store holds."""
    try:
        inventory = ctx.inventory()
    except ConfigError:
        inventory = None
    if inventory is None:
        uses = ctx.state.issuer_budgets(now)
    else:
        budgets: dict[str, IssuanceBudget] = {}
        for name, settings in sorted(inventory.issuers.items()):
            budget = settings.issuance_budget(name)
            if budget is not None:
                budgets.setdefault(budget.key, budget)
        uses = [ctx.state.budget_use(budget, now) for budget in budgets.values()]
    rows = []
    for use in uses:
        if use.orders is None and not use.blocked_until(now):
            continue  # an ACME issuer with its budget off, not paused: nothing to say
        blocked = use.blocked_until(now)
        rows.append({"issuer": use.issuer, "ca": use.shown, "orders": use.orders,
                     "per": format_duration(use.per) if use.orders is not None else None, "used": use.used,
                     "left": use.left, "next_free": _moment(use.next_free) if use.used else None,
                     "paused_until": _moment(use.paused_until) if use.paused_until and use.paused_until > now
                     else None,
                     "paused_reason": use.paused_reason if use.paused_until and use.paused_until > now else None,
                     "waits_until": _moment(blocked) if blocked else None})
    return rows


def _moment(when: datetime | None) -> str | None:
    return when.strftime("%Y-%m-%d %H:%M:%S") if when else None


def service_status(ctx: ServiceContext, cluster: str | None = None) -> dict[str, Any]:
    store = ctx.state
    states = store.all_states()  # Redis unreachable: StoreUnavailable names it (password redacted)
    pending = store.pending()
    scans = store.scans()
    inventory_problems = store.inventory_problems()
    holders = _lock_holders(ctx, states)
    now = ctx.clock.now()
    rows = []
    for (name, cert), state in sorted(states.items()):
        if cluster and name != cluster:
            continue
        not_after = [datetime.fromisoformat(v) for v in (state.get("not_after") or {}).values()]
        left = (min(not_after) - now).total_seconds() / 86400 if not_after else None
        holder = holders.get((name, cert))
        rows.append({
            "cluster": name,
            "cert": cert,
            "health": state.get("health", "unknown"),
            "reason": state.get("reason", ""),
            "days_left": round(left, 1) if left is not None else None,  # a number in JSON
            "served": state.get("served") or {},
            "intended": state.get("intended"),
            "last_scan": _short_time(state.get("last_scan")),
            "last_rotation": state.get("last_rotation"),
            "last_outcome": state.get("last_outcome"),
            "last_error": state.get("last_error"),
            "last_warnings": [w for w in str(state.get("last_warnings") or "").split("\n") if w],
            "failures": int(state.get("failures") or 0),
            "next_attempt": _short_time(state.get("next_attempt")),
            "backoff": _backoff(state, now),
            "in_flight": pending.get((name, cert)) or holder,
        })
    in_flight = [{"cluster": c, "cert": n, "rotation_id": i} for (c, n), i in sorted(pending.items())
                 if not cluster or c == cluster]
    return {"certificates": rows, "in_flight": in_flight,
            "scans": {c: s for c, s in scans.items() if not cluster or c == cluster},
            "scan_warnings": {c: s["warnings"].split("\n") for c, s in scans.items()
                              if s.get("warnings") and (not cluster or c == cluster)},
            "inventory_problems": list(inventory_problems.values()),
            "issuer_budgets": issuer_budgets(ctx, now)}
