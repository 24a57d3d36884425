"""``rotation``: the domain commands (check, rotate, history, ca init, simulator).

Each command parses options, calls one domain function, and formats the result: rich tables
for people, ``--json`` for scripts. Exit codes: 0 fine, 1 something due / failed / rolled
back, 2 errors (bad config, unreachable cluster, bad input).

Every value that came from outside (RS answers, CA problems, chat fields, records built from
them) is printed through ``rotation.display_text`` as text: never rich markup, never a
terminal escape.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from rotation import certs
from rotation.config import Inventory, load_inventory
from rotation.display_text import cell, line
from rotation.durations import parse_duration
from rotation.errors import ConfigError, Interrupted, RotationError
from rotation.model import KeyType, Outcome, RotationRecord, Step, Trigger
from rotation.pipeline import RotationOptions, utc_now
from rotation.policy_cli import policy_app
from rotation.run import describe
from rotation.service import RotationQueue, ServiceContext, follow

app = typer.Typer(
    help="Rotate and verify the TLS certificates of Redis Enterprise Software clusters.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
ca_app = typer.Typer(help="Manage the internal CA used by `type: internal_ca` issuers.", no_args_is_help=True)
app.add_typer(ca_app, name="ca")
app.add_typer(policy_app, name="policy")

console = Console()
err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Inventory YAML (default: $ROTATION_CONFIG or ./rotation.yaml)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(line(("error: ", "bold red"), cell(message, multiline=True)), highlight=False,
                      soft_wrap=True)
    return typer.Exit(code)


def load(config: Path | None) -> Inventory:
    try:
        return load_inventory(config)
    except ConfigError as exc:
        raise fail(exc.message) from None


# --- check -------------------------------------------------------------------------------
@app.command()
def check(
    config: ConfigOption = None,
    cluster: Annotated[list[str] | None, typer.Option("--cluster", help="Only this cluster (repeatable).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show every managed certificate as each node serves it.

    One row per cluster, certificate and node: fingerprint, days left and status
    (ok / due / mismatch / unreachable). Exit 0 all fine, 1 something due or mismatched,
    2 errors (unreachable endpoints or clusters, bad config).
    """
    from rotation.service import check_clusters

    inventory = load(config)
    names = cluster or list(inventory.clusters)
    try:
        for name in names:
            inventory.cluster(name)
    except ConfigError as exc:
        raise fail(exc.message) from None
    report = check_clusters(inventory, names)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        table = Table(title="Certificates as served", show_lines=False)
        for column in ("cluster", "cert", "node", "endpoint", "fingerprint", "days left", "status"):
            table.add_column(column)
        colours = {"ok": "green", "due": "yellow", "mismatch": "magenta", "unreachable": "red"}
        for row in report.rows:
            colour = colours.get(row["status"], "white")
            table.add_row(*map(cell, (row["cluster"], row["cert"], row["node"], row["endpoint"],
                                      (row["fingerprint"] or "-")[:16], row["days_left"])),
                          line((row["status"], colour), " ", (row["reason"], "")))
        console.print(table)
        for failure in report.errors:
            err_console.print(cell(failure, "red"), highlight=False)
    raise typer.Exit(report.exit_code)


# --- rotate ------------------------------------------------------------------------------
def _print_step(record: RotationRecord, step: Step) -> None:
    where = (f"{record.cluster}/{record.cert_name}", "dim")
    if step.finished_at is None:
        err_console.print(line("  ", where, " ", (step.name, ""), " ..."), highlight=False)
    else:
        mark = ("ok", "green") if step.ok else ("failed", "red")
        err_console.print(line("  ", where, " ", (step.name, ""), " ", mark, " ", (step.detail or "", "")),
                          highlight=False)


def print_records(records: list[RotationRecord]) -> None:
    for record in records:
        colour = {"verified": "green", "dry_run": "cyan", "rolled_back": "yellow"}.get(str(record.outcome), "red")
        console.print(line((f"{record.cluster}/{record.cert_name}", "bold"), " ", (record.outcome, colour),
                           " (rotation ", (record.id, ""), ")"), highlight=False)
        if record.error:
            console.print(line("  ", (record.error, "red")), highlight=False)
        if record.cluster_state and record.outcome is not Outcome.VERIFIED:
            console.print(line("  cluster state: ", (record.cluster_state, "bold"),
                               " (what every endpoint serves now, below)"), highlight=False)
        if record.nodes:
            table = Table(show_header=True, box=None, pad_edge=False)
            table.add_column("endpoint")
            table.add_column("before")
            table.add_column("after")
            for label, pair in record.nodes.items():
                table.add_row(*map(cell, (label, (pair.get("before") or "-")[:16], (pair.get("after") or "-")[:16])))
            console.print(table)
        elif record.new_fingerprint:
            console.print(line("  new ", (certs.short_fingerprint(record.new_fingerprint), ""), " valid until ",
                               (record.new_not_after, "")), highlight=False)


def exit_code_for(records: list[RotationRecord], dry_run: bool) -> int:
    wanted = Outcome.DRY_RUN if dry_run else Outcome.VERIFIED
    if all(r.outcome is wanted for r in records):
        return 0
    if any(r.outcome in (Outcome.REFUSED,) for r in records):
        return 2
    return 1


@app.command()
def rotate(
    cluster: Annotated[str, typer.Argument(help="Cluster name from the inventory.")],
    cert: Annotated[
        list[str] | None, typer.Argument(help="Certificate names: cm api proxy syncer metrics_exporter.")
    ] = None,
    all_certs: Annotated[bool, typer.Option("--all", help="Every certificate the inventory manages.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Issue and validate, push nothing.")] = False,
    cert_file: Annotated[
        Path | None, typer.Option(help="Push this certificate (full chain PEM) instead of issuing.")
    ] = None,
    key_file: Annotated[Path | None, typer.Option(help="Private key for --cert-file.")] = None,
    trust: Annotated[list[Path] | None, typer.Option(
        "--trust", help="CA certificate(s) the pushed chain must lead to (repeatable), besides the issuer's "
                        "ca_bundle and the cluster's verify bundle.")] = None,
    verify_deadline: Annotated[str | None, typer.Option(help="How long to wait for every node (e.g. 90s).")] = None,
    inline: Annotated[bool, typer.Option("--inline", help="Run in this process instead of the queue.")] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Queue, print the rotation ids, return.")] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Rotate certificates now: issue, validate, push, verify on every node, roll back on failure.

    By default the rotations go through the queue (a running `rotation worker`, Redis) and this
    command follows them step by step; --inline runs the pipeline here; --no-wait prints the
    rotation (task) ids and returns. --dry-run, --cert-file, --trust and --verify-deadline run inline.
    Prints old -> new fingerprint per node. Exit 0 only when every rotation is verified on
    every node (or validated, with --dry-run); 1 when one failed or was rolled back; 2 for
    bad input or a refusal (nothing pushed).
    """
    inventory = load(config)
    try:
        settings = inventory.cluster(cluster)
        names = [str(n) for n in settings.certificates] if all_certs else list(cert or [])
        if not names:
            raise ConfigError("name at least one certificate or pass --all")
        for name in names:
            inventory.plan(cluster, name)
        deadline = parse_duration(verify_deadline) if verify_deadline else None
    except (ConfigError, ValueError) as exc:
        raise fail(str(exc)) from None
    options = _inline_options(cert_file, key_file, trust or [], dry_run=dry_run, deadline=deadline,
                              quiet=as_json)
    here = inline or dry_run or options.issuer or deadline or options.trust
    queue = None if here else _queue(config)
    try:
        if queue is None:
            records = _rotate_here(inventory, cluster, names, options)
        else:
            records = _rotate_queued(queue, cluster, names, no_wait=no_wait, as_json=as_json)
            if records is None:
                return
    except RotationError as exc:
        raise fail(exc.message) from None
    if as_json:
        print(json.dumps([r.to_dict() for r in records], indent=2))
    else:
        print_records(records)
    raise typer.Exit(exit_code_for(records, dry_run))


def _inline_options(cert_file: Path | None, key_file: Path | None, trust: list[Path], *, dry_run: bool,
                    deadline: timedelta | None, quiet: bool) -> RotationOptions:
    from rotation.issuers.files import FileIssuer

    issuer = None
    if cert_file or key_file:
        if not (cert_file and key_file):
            raise fail("--cert-file and --key-file go together")
        issuer = FileIssuer(name=f"file:{cert_file.name}", cert_file=cert_file, key_file=key_file)
    return RotationOptions(trigger=Trigger.CLI, dry_run=dry_run, issuer=issuer, verify_deadline=deadline,
                           trust=_trust_anchors(trust), progress=None if quiet else _print_step)


def _rotate_here(inventory: Inventory, cluster: str, names: list[str], options: RotationOptions
                 ) -> list[RotationRecord]:
    """Inline: SIGTERM unwinds like Ctrl-C, so a rotation that pushed rolls back before the exit."""
    from rotation.interrupts import sigterm_unwinds
    from rotation.service import rotate_inline

    try:
        with sigterm_unwinds():
            return rotate_inline(inventory, cluster, names, options)
    except (Interrupted, KeyboardInterrupt) as exc:
        raise fail(f"{describe(exc)}: a rotation that had pushed was rolled back or its state recorded "
                   "(`rotation history`)", 1) from None


def _trust_anchors(paths: list[Path]) -> tuple[str, ...]:
    """The PEMs of ``--trust`` files, each checked to hold CA certificates (exit 2 naming the file)."""
    from rotation.issuers.base import read_issuer_file

    pems = []
    try:
        for path in paths:
            found = certs.load_certificates(read_issuer_file(path, what="--trust"), where=str(path))
            pems += [certs.cert_to_pem(c) for c in found]
    except RotationError as exc:
        raise fail(exc.message) from None
    return tuple(pems)


# The queue is provided by workers/ (Celery); the domain CLI only knows its protocol.
queue_factory: Callable[[ServiceContext], RotationQueue] | None = None


def _queue(config: Path | None = None) -> RotationQueue | None:
    try:
        ctx = ServiceContext(config_path=config)
    except ConfigError as exc:
        raise fail(exc.message) from None
    if queue_factory is None or ctx.redis_store is None:
        reason = "no queue in this entry point" if queue_factory is None else "ROTATION_STORE=local has no queue"
        err_console.print(f"[yellow]{reason}: running the rotation in this process[/]")
        return None
    return queue_factory(ctx)


def _rotate_queued(queue: RotationQueue, cluster: str, names: list[str], *, no_wait: bool,
                   as_json: bool) -> list[RotationRecord] | None:
    from rotation.errors import RotationInProgress

    ids, refused = [], []
    for name in names:
        try:
            ids.append(queue.submit(cluster, name, trigger=Trigger.CLI, requested_by=_whoami()))
        except RotationInProgress as exc:
            refused.append(exc.message)
    for message in refused:
        err_console.print(cell(message, "yellow"), highlight=False)
    if no_wait:
        print(json.dumps({"queued": ids, "refused": refused}) if as_json else "\n".join(ids))
        raise typer.Exit(2 if refused else 0)
    if not as_json:
        err_console.print(line(f"queued {len(ids)} rotation(s): ", (" ".join(ids), ""),
                               "; following (Ctrl-C stops following)"))
    records = follow(queue.ctx.store, queue, ids, None if as_json else _print_step)
    if refused:
        records += [RotationRecord(id="-", cluster=cluster, cert_name="?", trigger="cli", started_at=utc_now(),
                                   outcome=Outcome.REFUSED, error=m) for m in refused]
    return records


def _whoami() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no passwd entry in a container
        return "cli"


# --- history -----------------------------------------------------------------------------
@app.command()
def history(
    cluster: Annotated[str | None, typer.Option(help="Only this cluster.")] = None,
    cert: Annotated[str | None, typer.Option(help="Only this certificate name.")] = None,
    limit: Annotated[int, typer.Option(help="How many records.")] = 20,
    audit: Annotated[bool, typer.Option("--audit", help="Chat commands (who, where, what, decision) instead.")
                     ] = False,
    as_json: JsonOption = False,
) -> None:
    """Rotation records, newest first (with --audit: the chat commands, allowed or refused)."""
    from rotation.service import record_store

    if audit:
        try:
            entries = _chat_commands(cluster, limit)
        except RotationError as exc:
            raise fail(exc.message) from None
        _print_audit(entries, as_json)
        return
    try:
        records = record_store().history(cluster, cert, limit)
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


def _chat_commands(cluster: str | None, limit: int) -> list[dict[str, Any]]:
    from rotation.chatops.audit import AuditLog

    ctx = ServiceContext()
    if not ctx.uses_redis:
        raise fail("the chat audit lives in the service's Redis (ROTATION_STORE=redis)")
    return AuditLog(ctx.redis).recent(limit, cluster)


def _print_audit(entries: list[dict[str, Any]], as_json: bool = False) -> None:
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


# --- status ------------------------------------------------------------------------------
@app.command()
def status(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Every certificate's state as the service last saw it, and the rotations in flight.

    Shows the health from the last scan, days left, last rotation and its outcome, and for a
    certificate that is backing off: its failures, the next attempt and why (`rotation retry`
    clears it). Warns when a worker keeps an older inventory because an edit does not load.
    Needs the service's Redis.
    """
    from rotation.status import service_status

    try:
        ctx = ServiceContext(config_path=config)
        report = service_status(ctx)
        report["chat_commands"] = _chat_commands(None, 10)
    except RotationError as exc:
        raise fail(exc.message) from None
    if as_json:
        print(json.dumps(report, indent=2, default=str))
        return
    table = Table(title="Certificates (last scan)")
    for column in ("cluster", "cert", "health", "days left", "last scan", "last rotation", "failures",
                   "next attempt (why)", "in flight"):
        table.add_column(column)
    for row in report["certificates"]:
        backoff = row["backoff"]
        why = f"{backoff['until']} ({backoff['reason'][:80]})" if backoff else "-"
        table.add_row(*map(cell, (row["cluster"], row["cert"], f"{row['health']} {row['reason']}", row["days_left"],
                                  row["last_scan"] or "-", f"{row['last_outcome'] or '-'} {row['last_rotation'] or ''}",
                                  row["failures"] or 0, why, row["in_flight"] or "-")))
    console.print(table)
    if any(row["backoff"] for row in report["certificates"]):
        err_console.print("backing off after failures: `rotation retry CLUSTER CERT` lets the next scan try again",
                          highlight=False, soft_wrap=True)
    if report.get("chat_commands"):
        _print_audit(report["chat_commands"])
    for cluster, scan in report["scans"].items():
        if scan.get("last_error"):
            err_console.print(cell(f"{cluster}: last scan failed: {scan['last_error']}", "red"), highlight=False)
    for problem in report["inventory_problems"]:
        err_console.print(cell(f"{problem['host']}: {problem['path']} does not load since {problem['since']}; "
                               f"workers there keep the inventory loaded at {problem['kept_from']}: {problem['error']}",
                               "red"), highlight=False, soft_wrap=True)


@app.command()
def retry(
    cluster: Annotated[str, typer.Argument(help="Cluster name from the inventory.")],
    cert: Annotated[str, typer.Argument(help="Certificate name.")],
    config: ConfigOption = None,
) -> None:
    """Clear a certificate's backoff after failures: the next scan may rotate it again."""
    from rotation.service import clear_backoff

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


@app.command("secret-key")
def secret_key() -> None:
    """Print a new encryption key for ROTATION_SECRET_KEY (encrypts rollback keys and ACME accounts
    at rest). To rotate it, put the new key first and keep the old one after a comma."""
    from rotation.secrets import SecretBox

    print(SecretBox.generate_key())


# --- ca ----------------------------------------------------------------------------------
@ca_app.command("init")
def ca_init(
    directory: Annotated[Path, typer.Option("--dir", help="Where to write ca.pem and ca-key.pem.")] = Path("."),
    common_name: Annotated[str, typer.Option("--cn", help="CA common name.")] = "rotation internal CA",
    validity: Annotated[str, typer.Option(help="CA lifetime, e.g. 3650d.")] = "3650d",
    key_type: Annotated[KeyType, typer.Option(help="CA key type.")] = KeyType.ECDSA_P384,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Create a CA (certificate + private key, 0600) for people who have none."""
    from rotation.issuers.internal_ca import init_ca

    try:
        cert_path, key_path = init_ca(directory, common_name=common_name, validity=parse_duration(validity),
                                      key_type=key_type, overwrite=force)
    except (RotationError, ValueError) as exc:
        raise fail(str(exc)) from None
    console.print(cell(f"CA certificate: {cert_path}\nCA key (keep it secret, mode 0600): {key_path}", multiline=True))
    console.print(cell("Inventory entry:\n  issuers:\n    internal: "
                       f"{{type: internal_ca, ca_cert: {cert_path}, ca_key_file: {key_path}}}", multiline=True))


def _register_simulator() -> None:
    from rotation.simulator.command import simulator

    app.command("simulator", help="Run a simulated RS cluster on loopback (real TLS listeners and REST API).")(
        simulator
    )


_register_simulator()


__all__ = ["app"]
