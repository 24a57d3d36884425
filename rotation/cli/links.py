"""`rotation links`: every replication link between the inventory's clusters, with its sync status."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from rotation.cli.options import ConfigOption, JsonOption, load
from rotation.cli.render import cell, console, err_console, fail, line
from rotation.core.errors import ConfigError

if TYPE_CHECKING:
    from rotation.usecases.links import LinksReport


def links(
    config: ConfigOption = None,
    cluster: Annotated[list[str] | None, typer.Option("--cluster", help="Only links with an end here (repeatable).")
                       ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show every Replica Of and Active-Active link with its sync status and what it depends on.

    One row per link, read from its replica's side: replica <- source, status (in-sync, syncing,
    out-of-sync) and why, and the certificates whose rotation the link must follow
    (cluster/proxy, cluster/syncer). An end outside the inventory is named by its address.
    Exit 0 every link in sync, 1 one is not, 2 a cluster could not be read (or bad input, or no
    clusters in the inventory).
    """
    from rotation.usecases.links import links_report

    inventory = load(config, as_json)
    if not inventory.clusters:  # nothing read is not "every link in sync" (an empty file, ROTATION_CONFIG elsewhere)
        raise fail(f"no clusters in the inventory {inventory.source}", as_json=as_json)
    try:
        for name in cluster or ():
            inventory.cluster(name)
    except ConfigError as exc:
        raise fail(exc, as_json=as_json) from None
    report = links_report(inventory, cluster)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        raise typer.Exit(report.exit_code)
    _print(report)
    raise typer.Exit(report.exit_code)


def _print(report: LinksReport) -> None:
    from rich.table import Table

    table = Table(title="Replication links", show_lines=False)
    for column in ("kind", "replica <- source", "status", "depends on"):
        table.add_column(column)
    for link in report.links:
        colour = "green" if link.in_sync else "red"
        table.add_row(cell(link.kind), cell(link.label),
                      line((link.entry.status, colour), " ", (link.entry.last_error, "")),
                      cell(", ".join(link.dependency_labels)))
    console.print(table)
    if not report.links:
        console.print("no replication links between the inventory's clusters")
    for guid, outside in report.outsiders.items():
        err_console.print(line(("CRDB ", "yellow"), (guid, ""), " has participants outside the inventory: ",
                               (", ".join(outside), "")), highlight=False)
    for db, count in report.unknown_clients.items():
        console.print(line((db, "bold"), f" trusts {count} client certificate(s) that no inventory cluster's syncer "
                           "matches: replicas outside the inventory, or other clients (a replica's link shows on "
                           "its side only)"), highlight=False, soft_wrap=True)
    for name, why in report.unread.items():
        err_console.print(line(("error: ", "bold red"), "links of ", (name, "bold"), " not read: ", (why, "")),
                          highlight=False, soft_wrap=True)


__all__ = ["links"]
