"""``rotation policy audit|apply``: the TLS protocol and cipher policy of each cluster.

Shells only: parse options, call ``rotation.usecases.tls_audit``, print rich tables or ``--json``.
Exit codes: 0 compliant / applied, 1 drift, pending (Sentinel restart) or interrupted after the change, 2 errors
or refused.
What the cluster answered (versions, addresses, errors) is printed as text (``display_text``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rotation.cli.options import ConfigOption, JsonOption, load, whoami
from rotation.cli.render import cell, console, err_console, fail, line

if TYPE_CHECKING:
    from rotation.config import Inventory
    from rotation.core.tls_drift import EndpointTLS
    from rotation.usecases.tls_audit import AuditReport

policy_app = typer.Typer(help="Audit and enforce TLS versions and cipher suites (management, data, discovery).",
                         no_args_is_help=True)

ClusterArg = Annotated[str | None, typer.Argument(help="Cluster name from the inventory (default: all).")]


def _clusters(config: Path | None, cluster: str | None, *, with_policy: bool = False,
              as_json: bool = False) -> tuple[Inventory, list[str]]:
    from rotation.core.errors import ConfigError

    inventory = load(config, as_json)
    try:
        if cluster:
            inventory.cluster(cluster)
            return inventory, [cluster]
    except ConfigError as exc:
        raise fail(exc, as_json=as_json) from None
    names = [n for n, c in inventory.clusters.items() if c.tls_policy or not with_policy]
    if not names:
        raise fail("no cluster with a tls_policy in the inventory" if with_policy else "no clusters in the inventory",
                   as_json=as_json)
    return inventory, names


def _cell(endpoint: EndpointTLS, version: str) -> str:
    probe = next((p for p in endpoint.versions if p.version == version), None)
    if probe is None or probe.accepted is None:
        return "[dim]?[/]"
    return "[green]yes[/]" if probe.accepted else "[red]no[/]"


def print_audit(r: AuditReport) -> None:
    from rich import box
    from rich.table import Table

    console.print(line((r.cluster, "bold"), " RS ", (r.version or "unknown", "")), highlight=False)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False,
                  caption="suites: TLS 1.2 suites accepted / tried; --json has the negotiated ciphers")
    table.add_column("listener", no_wrap=True)
    table.add_column("node", no_wrap=True)
    table.add_column("endpoint", no_wrap=True)
    for column in ("1.0", "1.1", "1.2", "1.3", "suites", "plain"):
        table.add_column(column, no_wrap=True, min_width=len(column) if len(column) > 3 else 3)
    for e in r.endpoints:
        t = e.target
        suites = "-" if e.tls12_ciphers is None else f"{len(e.tls12_ciphers)}/{e.ciphers_tried}"
        plain = "-" if e.plaintext is None else ("yes" if e.plaintext else "no")
        where = (cell(t.service), cell(t.node), cell(f"{t.host}:{t.port}"))
        if e.error:
            table.add_row(*where, "[red]unreachable[/]", "", "", "", "", "")
            continue
        table.add_row(*where, *(_cell(e, v) for v in ("1.0", "1.1", "1.2", "1.3")), cell(suites), cell(plain))
    console.print(table)
    for d in r.drift:
        console.print(line("  ", ("drift", "magenta"), " (", (d.kind, ""), ") ", (d.where, ""), ": ",
                           (d.message, "")), highlight=False)
    for hint in dict.fromkeys(d.hint for d in r.drift if d.hint):
        console.print(line("  ", ("hint:", "yellow"), " ", (hint, "")), highlight=False)
    for error in r.errors:
        err_console.print(line("  ", (error, "red")), highlight=False, soft_wrap=True)
    verdict = "[green]compliant[/]" if r.compliant else "[red]errors[/]" if r.errors else "[magenta]drift[/]"
    console.print(f"  {verdict}")


@policy_app.command("audit")
def audit(
    cluster: ClusterArg = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    ciphers: Annotated[bool, typer.Option("--ciphers/--no-ciphers",
                                          help="Try every TLS 1.2 suite one at a time.")] = True,
) -> None:
    """What every node really accepts, by handshakes, compared with the policy and GET /v1/cluster.

    Per endpoint (8443, 9443, 8070, each TLS database, the discovery service on 8001): TLS
    1.0-1.3 accepted or refused, the negotiated cipher, and the TLS 1.2 suites accepted. Exit 0
    compliant, 1 drift, 2 errors.
    """
    from rotation.cli.progress import LiveProgress
    from rotation.usecases.tls_audit import audit_clusters

    inventory, names = _clusters(config, cluster, as_json=as_json)
    with LiveProgress("auditing", unit="handshakes", enabled=not as_json) as progress:
        reports = audit_clusters(inventory, names, scan_ciphers=ciphers, progress=progress)
    code = max(r.exit_code for r in reports)
    if as_json:
        print(json.dumps({"clusters": [r.to_dict() for r in reports], "exit_code": code}, indent=2))
    else:
        for report in reports:
            print_audit(report)
    raise typer.Exit(code)


@policy_app.command("apply")
def apply(
    cluster: ClusterArg = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check with the cluster's ?dry_run; change nothing.")]
    = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set the inventory's tls_policy with PUT /v1/cluster, then prove it by handshakes.

    Values the cluster's version cannot take are refused before any call, and so is a change while a
    rotation of a certificate it affects holds its lock. Each cluster's apply is recorded (`rotation
    history --policy`): who, when, the settings before and after, what was sent, the outcome. Exit 0
    applied (or dry run passed), 1 drift remains, Sentinel changes wait for a restart, or interrupted
    after the change, 2 refused/errors.
    """
    from rotation.cli.progress import LiveProgress
    from rotation.core.errors import RotationError
    from rotation.usecases.context import ServiceContext
    from rotation.usecases.tls_apply import apply_policies

    inventory, names = _clusters(config, cluster, with_policy=True, as_json=as_json)
    try:  # the service's state holds the certificates' locks (a dry run changes nothing and takes none)
        ctx = ServiceContext(config_path=config, inventory=lambda: inventory)
        state = None if dry_run else ctx.state
    except RotationError as exc:
        raise fail(exc, as_json=as_json) from None
    with ctx, LiveProgress("applying", unit="clusters", enabled=not as_json) as progress:
        reports = apply_policies(inventory, names, state=state, dry_run=dry_run, progress=progress,
                                 requested_by=whoami())
    code = max(r.exit_code for r in reports)
    if as_json:
        print(json.dumps({"clusters": [r.to_dict() for r in reports], "exit_code": code}, indent=2))
        raise typer.Exit(code)
    for report in reports:
        colour = {"applied": "green", "unchanged": "green", "dry_run": "cyan", "pending": "yellow"}.get(
            report.status, "red")
        console.print(line((report.cluster, "bold"), " ", (report.status, colour)), highlight=False)
        if report.plan and report.plan.fields:
            verb = "would set" if report.status == "dry_run" else "set"
            for wire, value in report.plan.fields.items():
                console.print(line(f"  {verb} ", (wire, ""), " = ", (repr(value), "")), highlight=False)
        for note in report.notes:
            console.print(line("  ", ("note:", "yellow"), " ", (note, "")), highlight=False)
        for error in report.errors:
            err_console.print(line("  ", (error, "red")), highlight=False, soft_wrap=True)
        if report.record_id:
            console.print(line("  record: ", (f"rotation history --id {report.record_id}", "")), highlight=False)
        if report.audit:
            print_audit(report.audit)
    raise typer.Exit(code)


__all__ = ["policy_app"]
