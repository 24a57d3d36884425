"""`rotation config check`: everything the inventory names, proven usable without changing anything."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated

import typer

from rotation.cli.options import ConfigOption, JsonOption, load
from rotation.cli.render import cell, console, fail, line
from rotation.core.errors import ConfigError

config_app = typer.Typer(help="Check the inventory and everything it names.", no_args_is_help=True)


@config_app.command("check")
def config_check(
    config: ConfigOption = None,
    cluster: Annotated[list[str] | None, typer.Option("--cluster", help="Only this cluster (repeatable).")] = None,
    offline: Annotated[bool, typer.Option("--offline", help="No network: files, secrets and plans only.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Prove the inventory usable: secrets readable, files loading, issuers able to issue, every
    cluster's REST API answering with our credentials over verified TLS. Changes nothing.

    Exit 0 usable (warnings allowed), 2 something named cannot be used or the inventory does not load.
    """
    from rich.table import Table

    from rotation.adapters.clock import SYSTEM_CLOCK
    from rotation.adapters.issuers.factory import IssuerFactory
    from rotation.config import ServiceSettings
    from rotation.usecases.config_check import CheckInputs, check_config

    inventory = load(config, as_json, check_files=False)  # a missing file is a finding of its own here
    try:
        for name in cluster or ():
            inventory.cluster(name)
    except ConfigError as exc:
        raise fail(exc, as_json=as_json) from None
    try:
        settings = ServiceSettings.from_env()
        scan_every: timedelta | None = settings.scan_interval + settings.rotation_jitter
    except ConfigError:
        scan_every = None  # the service's own start says what is wrong with its environment
    # No service state: an ACME account is never registered by a check.
    inputs = CheckInputs(IssuerFactory(lambda: None, SYSTEM_CLOCK), offline=offline, clusters=tuple(cluster or ()),
                         scan_every=scan_every)
    report = check_config(inventory, inputs)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        raise typer.Exit(report.exit_code)
    table = Table(title=cell(f"Inventory {inventory.source or ''}".strip()))  # a path: text, never markup
    for column in ("where", "result"):
        table.add_column(column)
    colours = {"ok": "green", "warning": "yellow", "error": "red"}
    for finding in report.findings:
        table.add_row(cell(finding.where), line((str(finding.severity), colours[finding.severity]), " ",
                                                (finding.message, "")))
    console.print(table)
    raise typer.Exit(report.exit_code)


__all__ = ["config_app"]
