"""`rotation history`: rotation records, or the chat commands (`--audit`)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from rotation.cli.options import JsonOption
from rotation.cli.render import cell, console, fail
from rotation.core.errors import RotationError


def history(
    cluster: Annotated[str | None, typer.Option(help="Only this cluster.")] = None,
    cert: Annotated[str | None, typer.Option(help="Only this certificate name.")] = None,
    limit: Annotated[int, typer.Option(help="How many records.")] = 20,
    audit: Annotated[bool, typer.Option("--audit", help="Chat commands (who, where, what, decision) instead.")
                     ] = False,
    as_json: JsonOption = False,
) -> None:
    """Rotation records, newest first (with --audit: the chat commands, allowed or refused)."""
    from rich.table import Table

    from rotation.usecases.context import ServiceContext
    from rotation.usecases.history import chat_commands, rotation_history

    try:
        ctx = ServiceContext()
        if audit:
            print_audit(chat_commands(ctx, limit, cluster), as_json)
            return
        records = rotation_history(ctx, cluster, cert, limit)
    except RotationError as exc:
        raise fail(exc.message) from None
    if as_json:
        print(json.dumps([r.to_dict() for r in records], indent=2))
        return
    table = Table(title="Rotation history")
    for column in ("started", "id", "cluster", "cert", "trigger", "outcome", "old", "new", "error"):
        table.add_column(column)
    for r in records:
        table.add_row(*map(cell, (f"{r.started_at:%Y-%m-%d %H:%M:%S}", r.id, r.cluster, r.cert_name, r.trigger,
                                  r.outcome, (r.old_fingerprint or "-")[:16], (r.new_fingerprint or "-")[:16],
                                  (r.error or "")[:80])))
    console.print(table)
    for r in records:  # what a rotation accepted but an operator should know (e.g. the RS profile it misses)
        for warning in r.warnings:
            console.print(cell(f"{r.id} {r.cluster}/{r.cert_name}: warning: {warning}", "yellow"), highlight=False,
                          soft_wrap=True)


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
