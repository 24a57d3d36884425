"""`rotation status` and `rotation retry`: the service's view of every certificate, and its backoff."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from rotation.cli.history import print_audit
from rotation.cli.options import ConfigOption, JsonOption
from rotation.cli.render import cell, console, err_console, fail
from rotation.core.errors import RotationError
from rotation.core.text import days_text


def status(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Every certificate's state as the service last saw it, and the rotations in flight.

    Shows the health from the last scan, days left, last rotation and its outcome, and for a
    certificate that is backing off: its failures, the next attempt and why (`rotation retry`
    clears it). Warns when a worker keeps an older inventory because an edit does not load.
    Reads the service's state (Redis, or the local state folder with ROTATION_STORE=local) and says
    which (`--json`: `source`). Exit 0, 2 the store unreachable.
    """
    from rich.table import Table

    from rotation.usecases.context import ServiceContext
    from rotation.usecases.history import chat_commands
    from rotation.usecases.status import service_status

    try:
        ctx = ServiceContext(config_path=config)
        report = service_status(ctx)
        report["chat_commands"] = chat_commands(ctx, 10)
        report["source"] = ctx.settings.describe_store()
    except RotationError as exc:
        raise fail(exc, as_json=as_json) from None
    if as_json:
        print(json.dumps(report, indent=2, default=str))
        return
    err_console.print(cell(f"read from {report['source']}", "dim"), highlight=False, soft_wrap=True)
    table = Table(title="Certificates (last scan)")
    for column in ("cluster", "cert", "health", "days left", "last scan", "last rotation", "failures",
                   "next attempt (why)", "in flight"):
        table.add_column(column)
    for row in report["certificates"]:
        backoff = row["backoff"]
        why = f"{backoff['until']} ({backoff['reason'][:80]})" if backoff else "-"
        table.add_row(*map(cell, (row["cluster"], row["cert"], f"{row['health']} {row['reason']}",
                                  days_text(row["days_left"]),
                                  row["last_scan"] or "-", f"{row['last_outcome'] or '-'} {row['last_rotation'] or ''}",
                                  row["failures"] or 0, why, row["in_flight"] or "-")))
    console.print(table)
    if report.get("issuer_budgets"):
        budgets = Table(title="Issuer budgets (orders per window, fleet-wide)")
        for column in ("issuer", "CA account", "orders left", "window", "waits until (why)"):
            budgets.add_column(column)
        for row in report["issuer_budgets"]:
            left = "-" if row["orders"] is None else f"{row['left']} of {row['orders']}"
            why = "-"
            if row["paused_until"]:
                why = f"{row['paused_until']} (the CA answered rateLimited: {row['paused_reason'] or '-'})"
            elif row["waits_until"]:
                why = f"{row['waits_until']} (budget spent)"
            budgets.add_row(*map(cell, (row["issuer"], row["ca"], left, row["per"] or "-", why)))
        console.print(budgets)
    if any(row["backoff"] for row in report["certificates"]):
        err_console.print("backing off after failures: `rotation retry CLUSTER CERT` lets the next scan try again",
                          highlight=False, soft_wrap=True)
    if report.get("chat_commands"):
        print_audit(report["chat_commands"])
    for row in report["certificates"]:  # what the last rotation accepted but should be known (profile gaps)
        for warning in row.get("last_warnings") or ():
            err_console.print(cell(f"{row['cluster']}/{row['cert']}: warning: {warning}", "yellow"), highlight=False,
                              soft_wrap=True)
    for cluster, warnings in report.get("scan_warnings", {}).items():  # e.g. internode certificates near fallback
        for warning in warnings:
            err_console.print(cell(f"{cluster}: warning: {warning}", "yellow"), highlight=False, soft_wrap=True)
    for cluster, scan in report["scans"].items():
        if scan.get("last_error"):
            err_console.print(cell(f"{cluster}: last scan failed: {scan['last_error']}", "red"), highlight=False)
    for problem in report["inventory_problems"]:
        err_console.print(cell(f"{problem['host']}: {problem['path']} does not load since {problem['since']}; "
                               f"workers there keep the inventory loaded at {problem['kept_from']}: {problem['error']}",
                               "red"), highlight=False, soft_wrap=True)


def retry(
    cluster: Annotated[str, typer.Argument(help="Cluster name from the inventory.")],
    cert: Annotated[str, typer.Argument(help="Certificate name.")],
    config: ConfigOption = None,
) -> None:
    """Clear a certificate's backoff after failures: the next scan may rotate it again.

    Exit 0 (also when it was not backing off), 2 an unknown cluster or certificate, or the store unreachable."""
    from rotation.usecases.backoff import clear_backoff
    from rotation.usecases.context import ServiceContext

    try:
        cleared = clear_backoff(ServiceContext(config_path=config), cluster, cert)
    except RotationError as exc:
        raise fail(exc.message) from None
    if not cleared["next_attempt"] and not cleared["failures"]:
        console.print(cell(f"{cluster}/{cert} was not backing off"), highlight=False)
        return
    console.print(cell(f"{cluster}/{cert}: backoff cleared ({cleared['failures']} failure(s), next attempt was "
                       f"{cleared['next_attempt'] or '-'}, last error: {cleared['last_error'] or '-'}); "
                       "the next scan may rotate it"), highlight=False)


__all__ = ["retry", "status"]
