"""`rotation history`: rotation records (and `policy apply` records), or the chat commands (`--audit`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rotation.cli.options import ConfigOption, JsonOption
from rotation.cli.render import cell, console, err_console, fail, line
from rotation.core.errors import RotationError

if TYPE_CHECKING:
    from rotation.core.model import RotationRecord
    from rotation.usecases.context import ServiceContext


def history(
    command: typer.Context,
    cluster: Annotated[str | None, typer.Option(help="Only this cluster.")] = None,
    cert: Annotated[str | None, typer.Option(help="Only this certificate name.")] = None,
    policy: Annotated[bool, typer.Option("--policy", help="Only the `policy apply` records (TLS policy changes).")
                      ] = False,
    rotation_id: Annotated[str | None, typer.Option("--id", help="One rotation (the id `rotate --no-wait` prints) "
                                                                "with its steps and retries.")] = None,
    limit: Annotated[int, typer.Option(help="How many records.")] = 20,
    audit: Annotated[bool, typer.Option("--audit", help="Chat commands (who, where, what, decision) instead.")
                     ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Rotation records and `policy apply` records (cert `tls_policy`), newest first (with --audit: the chat
    commands, allowed or refused).

    Says which Redis (or local state folder) it read. An unknown --cluster or --cert exits 2.
    """
    if rotation_id is not None:
        _refuse_beside_id(command, as_json)
    if policy and cert is not None:  # a policy apply's record has no certificate
        raise fail(f"--policy shows the TLS policy changes, --cert {cert} a certificate's rotations: pass one",
                   as_json=as_json)
    if limit < 1:  # a negative one sliced records off the end of the list
        raise fail(f"--limit {limit}: at least 1", as_json=as_json)
    from rich.table import Table

    from rotation.core.targets import TLS_POLICY
    from rotation.usecases.context import ServiceContext
    from rotation.usecases.history import chat_commands, rotation_history

    try:
        ctx = ServiceContext(config_path=config)
        check_names(ctx, cluster, cert)
        if rotation_id is not None:
            found = rotation_with_retries(ctx, rotation_id)
        elif audit:
            entries = chat_commands(ctx, limit, cluster)
        else:
            records = rotation_history(ctx, cluster, TLS_POLICY if policy else cert, limit)
    except RotationError as exc:
        raise fail(exc, as_json=as_json) from None
    err_console.print(cell(f"read from {ctx.settings.describe_store()}", "dim"), highlight=False, soft_wrap=True)
    if rotation_id is not None:
        print_rotation(found, as_json)
        return
    if audit:
        print_audit(entries, as_json)
        return
    if as_json:
        print(json.dumps([r.to_dict() for r in records], indent=2))
        return
    table = Table(title="Rotation history")
    for column in ("started", "id", "cluster", "cert", "trigger", "by", "outcome", "old", "new", "error"):
        table.add_column(column)
    for r in records:  # who asked: the audit trail's first question
        outcome = r.policy.get("status", r.outcome) if r.policy is not None else r.outcome  # the apply's own word
        table.add_row(*map(cell, (f"{r.started_at:%Y-%m-%d %H:%M:%S}", r.id, r.cluster, r.cert_name, r.trigger,
                                  r.requested_by or "-", outcome, (r.old_fingerprint or "-")[:16],
                                  (r.new_fingerprint or "-")[:16], (r.error or "")[:80])))
    console.print(table)
    for r in records:  # a policy change: from what to what
        for change in r.policy_changes():
            console.print(cell(f"{r.id} {r.cluster}/{r.cert_name}: {change}"), highlight=False, soft_wrap=True)
    for r in records:  # what a rotation accepted but an operator should know (e.g. the RS profile it misses)
        for warning in r.warnings:
            console.print(cell(f"{r.id} {r.cluster}/{r.cert_name}: warning: {warning}", "yellow"), highlight=False,
                          soft_wrap=True)


def _refuse_beside_id(command: typer.Context, as_json: bool) -> None:
    """``--id`` shows one rotation: an option that would choose records too is refused (exit 2) rather than
    silently ignored."""
    sources = {name: command.get_parameter_source(name)
               for name in ("cluster", "cert", "policy", "limit", "audit")}
    # typer carries its own click, whose ParameterSource has no public name: compared by its name
    given = [f"--{name}" for name, source in sources.items() if source is not None and source.name != "DEFAULT"]
    if given:
        raise fail(f"--id shows one rotation, {' '.join(given)} chooses records: pass one or the other",
                   as_json=as_json)


def check_names(ctx: ServiceContext, cluster: str | None, cert: str | None) -> None:
    """An unknown cluster or certificate is an error (ConfigError, exit 2), not an empty table. Names are
    checked against the inventory when it loads; without one, only the certificate name's form."""
    from rotation.core.errors import ConfigError
    from rotation.core.targets import target_name

    try:
        inventory = ctx.inventory() if cluster or cert else None
    except ConfigError:
        inventory = None  # history is still readable without the inventory
    if inventory is not None and cluster is not None:
        inventory.cluster(cluster)
    if cert is not None:
        if inventory is not None and cluster is not None:
            inventory.plan(cluster, cert)
        else:
            try:
                target_name(cert)
            except ValueError as exc:
                raise ConfigError(f"unknown certificate name {cert!r}: {exc}") from None


def rotation_with_retries(ctx: ServiceContext, rotation_id: str) -> list[RotationRecord]:
    """The record of ``rotation_id`` and those of its retries (``<id>.<n>``), oldest first."""
    from rotation.core import retry
    from rotation.core.errors import ConfigError

    record = ctx.state.get(rotation_id)
    if record is None:
        raise ConfigError(f"no rotation {rotation_id!r} in {ctx.settings.describe_store()}")
    later = [r for r in ctx.state.history(record.cluster, record.cert_name, 200)
             if r.id != rotation_id and retry.same_rotation(r.id, rotation_id)]
    return [record, *sorted(later, key=lambda r: r.started_at)]


def print_rotation(records: list[RotationRecord], as_json: bool) -> None:
    from rotation.cli.rotate import print_records

    if as_json:
        print(json.dumps([r.to_dict() for r in records], indent=2))
        return
    for record in records:  # each try: who asked, when, its steps; then the outcome of the last one
        what = "rotation " if record.policy is None else "policy apply "
        console.print(line(what, (record.id, "bold"), ": ", (record.trigger, ""), " by ",
                           (record.requested_by or "-", ""), f", started {record.started_at:%Y-%m-%d %H:%M:%S}, ",
                           (record.outcome, "")), highlight=False, soft_wrap=True)
        for step in record.steps:
            mark = ("...", "") if step.finished_at is None else (("ok", "green") if step.ok else ("failed", "red"))
            console.print(line("  ", (step.name, ""), " ", mark, " ", (step.detail or "", "")), highlight=False,
                          soft_wrap=True)
        for change in record.policy_changes():
            console.print(line("  ", (change, "")), highlight=False, soft_wrap=True)
    print_records(records[-1:])


def print_audit(entries: list[dict[str, Any]], as_json: bool = False) -> None:
    from rich.table import Table

    if as_json:
        print(json.dumps(entries, indent=2))
        return
    table = Table(title="Chat commands")
    for column in ("time", "who", "where", "command", "decision", "tasks"):
        table.add_column(column)
    for a in entries:
        who = f"{a.get('platform')}:{a.get('team') or '-'}/{a.get('user')}" + (
            f" ({a['user_name']})" if a.get("user_name") else "")
        table.add_row(*map(cell, (str(a.get("at", ""))[:19].replace("T", " "), who, a.get("channel") or "-",
                                  a.get("command", ""), f"{a.get('decision', '')} {a.get('reason') or ''}".strip(),
                                  " ".join(map(str, a.get("task_ids") or [])) or "-")))
    console.print(table)


__all__ = ["history", "print_audit"]
