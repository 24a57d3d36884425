"""`rotation check`: every managed certificate as each node serves it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from rotation.cli.options import ConfigOption, JsonOption, load
from rotation.cli.render import cell, console, err_console, fail, line
from rotation.core.errors import ConfigError
from rotation.core.text import days_text

if TYPE_CHECKING:
    from rotation.usecases.ocsp_status import ProxyOcsp


def check(
    config: ConfigOption = None,
    cluster: Annotated[list[str] | None, typer.Option("--cluster", help="Only this cluster (repeatable).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show every managed certificate as each node serves it.

    One row per cluster, certificate and node: fingerprint, days left and status
    (ok / due / mismatch / unreachable). Exit 0 all fine, 1 something due or mismatched, a
    warning (an internode certificate near RS's fallback, a health report that disagrees) or an
    OCSP stapling problem, 2 errors (unreachable endpoints or clusters, bad config, no clusters).
    """
    from rich.table import Table

    from rotation.usecases.check import check_clusters

    inventory = load(config, as_json)
    names = cluster or list(inventory.clusters)
    if not names:  # nothing checked is not "all fine" (an empty file, ROTATION_CONFIG pointing elsewhere)
        raise fail(f"no clusters in the inventory {inventory.source}", as_json=as_json)
    try:
        for name in names:
            inventory.cluster(name)
    except ConfigError as exc:
        raise fail(exc, as_json=as_json) from None
    from rotation.cli.progress import LiveProgress

    with LiveProgress("checking", unit="clusters read + handshakes", enabled=not as_json) as progress:
        report = check_clusters(inventory, names, progress=progress)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        table = Table(title="Certificates as served", show_lines=False)
        for column in ("cluster", "cert", "node", "endpoint", "fingerprint", "days left", "status"):
            table.add_column(column)
        colours = {"ok": "green", "due": "yellow", "mismatch": "magenta", "unreachable": "red",
                   "unmanaged": "cyan", "warning": "yellow", "expired": "red"}
        for row in report.rows:
            colour = colours.get(row["status"], "white")
            table.add_row(*map(cell, (row["cluster"], row["cert"], row["node"], row["endpoint"],
                                      (row["fingerprint"] or "-")[:16], days_text(row["days_left"]))),
                          line((row["status"], colour), " ", (row["reason"], "")))
        console.print(table)
        _print_coupled(report.coupled, report.links_unread)
        _print_ocsp(report.ocsp)
        for warning in report.warnings:  # internode certificates near RS's fallback, health report mismatches
            err_console.print(line(("warning ", "yellow"), (warning, "")), highlight=False, soft_wrap=True)
        for failure in report.errors:
            err_console.print(cell(failure, "red"), highlight=False, soft_wrap=True)  # one line, in a log too
    raise typer.Exit(report.exit_code)


def _print_coupled(coupled: dict[str, list[str]], unread: dict[str, str]) -> None:
    """Certificates replication peers depend on: their rotation also changes those peers."""
    for name, dependents in coupled.items():
        console.print(line(("coupled ", "cyan"), (name, "bold"), ": ", (f"{len(dependents)} dependent(s)", "")),
                      highlight=False)
        for dependent in dependents:
            console.print(line("  ", (dependent, "")), highlight=False, soft_wrap=True)
    for cluster, why in unread.items():
        err_console.print(line(("links of ", "yellow"), (cluster, "bold"), " not read: ", (why, "")), highlight=False,
                          soft_wrap=True)


def _print_ocsp(rows: list[ProxyOcsp]) -> None:
    """The proxy's OCSP stapling per cluster (RS 6.2.12+): on/off, the responder's last answer."""
    for row in rows:
        if row.error:
            err_console.print(line(("ocsp ", "yellow"), (row.cluster, "bold"), " not read: ", (row.error, "")),
                              highlight=False, soft_wrap=True)
            continue
        answer, responder = row.status.cert_status or "no answer yet", row.status.responder_url or "no responder URL"
        colour = "green" if answer == "GOOD" else ("red" if row.problem else "white")
        console.print(line(("ocsp ", "cyan"), (row.cluster, "bold"), f": stapling {'on' if row.stapling else 'off'}",
                           ", last answer ", (answer, colour), " from ", (responder, ""),
                           *((("; ", ""), (row.problem, "red")) if row.problem else ())),
                      highlight=False, soft_wrap=True)


__all__ = ["check"]
