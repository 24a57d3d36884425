"""`rotation rotate`: through the queue and followed, or in this process (`--inline`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rotation.cli.options import ConfigOption, JsonOption, load, whoami
from rotation.cli.render import err_console, fail, print_table, say
from rotation.core.durations import parse_duration
from rotation.core.errors import ConfigError, Interrupted, RotationError
from rotation.core.model import Outcome, RotationRecord, Step, Trigger

if TYPE_CHECKING:
    from rotation.usecases.context import ServiceContext
    from rotation.usecases.queue import RotationQueue
    from rotation.usecases.rotate.run import RotationOptions


def _print_step(record: RotationRecord, step: Step) -> None:
    where = (f"{record.cluster}/{record.cert_name}", "dim")
    if step.finished_at is None:
        say("  ", where, " ", (step.name, ""), " ...", err=True)
    else:
        mark = ("ok", "green") if step.ok else ("failed", "red")
        say("  ", where, " ", (step.name, ""), " ", mark, " ", (step.detail or "", ""), err=True, soft_wrap=True)


def print_records(records: list[RotationRecord]) -> None:
    from rotation.core import certs

    for record in records:
        colour = {"verified": "green", "dry_run": "cyan", "rolled_back": "yellow"}.get(str(record.outcome), "red")
        say((f"{record.cluster}/{record.cert_name}", "bold"), " ", (record.outcome, colour),
            " (rotation ", (record.id, ""), ")")
        if record.error:
            say("  ", (record.error, "red"), soft_wrap=True)
        _print_plan(record)
        if record.cluster_state and record.outcome is not Outcome.VERIFIED:
            say("  cluster state: ", (record.cluster_state, "bold"), " (what every endpoint serves now, below)")
        if record.nodes:
            print_table(("endpoint", "before", "after"),
                        [(label, (pair.get("before") or "-")[:16], (pair.get("after") or "-")[:16])
                         for label, pair in record.nodes.items()])
        elif record.new_fingerprint:
            say("  new ", (certs.short_fingerprint(record.new_fingerprint), ""), " valid until ",
                (record.new_not_after, ""))


def _print_plan(record: RotationRecord) -> None:
    """A dry run's plan, one line per step a companion would take (replication: per peer)."""
    plan = next((s for s in record.steps if s.name == "plan"), None)
    if plan is None or not record.dry_run:
        return
    say("  plan:")
    for part in plan.detail.split("; "):
        say("    ", (part, ""), soft_wrap=True)
    for warning in record.warnings:
        say("  ", (warning, "yellow"), soft_wrap=True)


def exit_code_for(records: list[RotationRecord], dry_run: bool) -> int:
    wanted = Outcome.DRY_RUN if dry_run else Outcome.VERIFIED
    if all(r.outcome is wanted for r in records):
        return 0
    if any(r.outcome in (Outcome.REFUSED,) for r in records):
        return 2
    return 1


def rotate(
    cluster: Annotated[str, typer.Argument(help="Cluster name from the inventory.")],
    cert: Annotated[
        list[str] | None, typer.Argument(help="Certificate names: cm api proxy syncer metrics_exporter "
                                              "ldap_client, rest_client, db:DATABASE.")
    ] = None,
    all_certs: Annotated[bool, typer.Option("--all", help="Every certificate the inventory manages (databases "
                                                          "and rest_client too).")] = False,
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
    allow_unmanaged_peer: Annotated[bool, typer.Option(
        "--allow-unmanaged-peer", help="Rotate even when replication peers outside the inventory depend on the "
                                       "certificate (they are left to you; runs inline).")] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Queue, print the rotation ids, return.")] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Rotate certificates now: issue, validate, push, verify on every node, roll back on failure.

    By default the rotations go through the queue (a running `rotation worker`, Redis) and this
    command follows them step by step; --inline runs the pipeline here; --no-wait prints the
    rotation (task) ids and returns. --dry-run, --cert-file, --trust, --verify-deadline and
    --allow-unmanaged-peer run inline. A certificate replication peers depend on (proxy, syncer)
    also changes those peers, undone on failure (see `rotation links`); --dry-run prints the plan.
    Prints old -> new fingerprint per node. Exit 0 only when every rotation is verified on
    every node (or validated, with --dry-run); 1 when one failed or was rolled back; 2 for
    bad input or a refusal (nothing pushed).
    """
    _refuse_contradictions(cert or [], all_certs=all_certs, inline=inline, no_wait=no_wait, as_json=as_json,
                           pair=(cert_file is not None, key_file is not None),
                           inline_only={"--dry-run": dry_run, "--cert-file": cert_file is not None,
                                        "--trust": bool(trust), "--verify-deadline": verify_deadline is not None,
                                        "--allow-unmanaged-peer": allow_unmanaged_peer})
    from rotation.usecases.context import ServiceContext

    inventory = load(config, as_json)
    try:
        names = [str(n) for n in inventory.targets(cluster)] if all_certs else list(cert or [])
        if not names:
            raise ConfigError("name at least one certificate or pass --all")
        # db:<key> as the inventory has it; a name given twice (or a database by name and uid) rotated once
        names = list(dict.fromkeys(str(inventory.plan(cluster, name).cert_name) for name in names))
        deadline = parse_duration(verify_deadline) if verify_deadline is not None else None
        if deadline is not None and deadline <= timedelta(0):
            raise ConfigError(f"--verify-deadline {verify_deadline}: must be longer than zero (e.g. 90s)")
    except (ConfigError, ValueError) as exc:
        raise fail(exc, as_json=as_json) from None
    here = bool(inline or dry_run or cert_file or key_file or deadline or trust or allow_unmanaged_peer)
    # one context, given the inventory checked above (not read and validated again)
    try:
        ctx = ServiceContext(config_path=config, inventory=lambda: inventory)
    except ConfigError as exc:
        raise fail(exc, as_json=as_json) from None
    queue = None if here else _queue(ctx)
    try:
        if queue is None:
            # the pipeline and issuers are imported only here: a queued rotation runs in the worker
            options = _inline_options(cert_file, key_file, trust or [], dry_run=dry_run, deadline=deadline,
                                      as_json=as_json)
            options.allow_unmanaged_peer = allow_unmanaged_peer
            _long_work()
            with ctx:
                records = _rotate_here(ctx, cluster, names, options, as_json=as_json)
        else:
            records = _rotate_queued(queue, cluster, names, no_wait=no_wait, as_json=as_json)
    except RotationError as exc:
        raise fail(exc, as_json=as_json) from None
    if as_json:
        print(json.dumps([r.to_dict() for r in records], indent=2))
    else:
        print_records(records)
    raise typer.Exit(exit_code_for(records, dry_run))


def _refuse_contradictions(certs_named: list[str], *, all_certs: bool, inline: bool, no_wait: bool, as_json: bool,
                           pair: tuple[bool, bool], inline_only: dict[str, bool]) -> None:
    """Arguments that cannot all be obeyed are refused (exit 2) rather than one silently ignored."""
    if pair[0] != pair[1]:
        raise fail("--cert-file and --key-file go together", as_json=as_json)
    if all_certs and certs_named:
        raise fail(f"name certificates ({' '.join(certs_named)}) or pass --all, not both", as_json=as_json)
    if no_wait:
        here = ["--inline"] * inline + [flag for flag, given in inline_only.items() if given]
        if here:
            raise fail(f"--no-wait queues the rotations, {here[0]} runs them in this process: pass one of them",
                       as_json=as_json)


def _inline_options(cert_file: Path | None, key_file: Path | None, trust: list[Path], *, dry_run: bool,
                    deadline: timedelta | None, as_json: bool) -> RotationOptions:
    from rotation.adapters.issuers.files import FileIssuer
    from rotation.usecases.rotate.run import RotationOptions

    issuer = None
    if cert_file and key_file:  # one without the other was refused first (_refuse_contradictions)
        issuer = FileIssuer(name=f"file:{cert_file.name}", cert_file=cert_file, key_file=key_file)
    return RotationOptions(trigger=Trigger.CLI, dry_run=dry_run, issuer=issuer, verify_deadline=deadline,
                           trust=_trust_anchors(trust, as_json), progress=None if as_json else _print_step)


def _rotate_here(ctx: ServiceContext, cluster: str, names: list[str], options: RotationOptions, *,
                 as_json: bool) -> list[RotationRecord]:
    """Inline, one certificate after the other: SIGTERM unwinds like Ctrl-C, so a rotation that pushed
    rolls back before the exit."""
    from rotation.usecases.rotate.interrupts import sigterm_unwinds
    from rotation.usecases.rotate.record import rotate_and_record
    from rotation.usecases.rotate.run import describe

    try:
        with sigterm_unwinds():
            return [rotate_and_record(ctx, cluster, name, options).record for name in names]
    except (Interrupted, KeyboardInterrupt) as exc:
        raise fail(f"{describe(exc)}: a rotation that had pushed was rolled back or its state recorded "
                   "(`rotation history`)", 1, as_json=as_json) from None


def _trust_anchors(paths: list[Path], as_json: bool) -> tuple[str, ...]:
    """The PEMs of ``--trust`` files, each checked to hold CA certificates (exit 2 naming the file)."""
    from rotation.config.files import read_file
    from rotation.core import certs

    pems = []
    try:
        for path in paths:
            found = certs.load_certificates(read_file(path, what="--trust"), where=str(path))
            pems += [certs.cert_to_pem(c) for c in found]
    except RotationError as exc:
        raise fail(exc, as_json=as_json) from None
    return tuple(pems)


# The queue is provided by workers/ (Celery); the domain CLI only knows its protocol.
queue_factory: Callable[[ServiceContext], RotationQueue] | None = None


def _queue(ctx: ServiceContext) -> RotationQueue | None:
    if queue_factory is None or not ctx.settings.has_queue:
        reason = "no queue in this entry point" if queue_factory is None else "ROTATION_STORE=local has no queue"
        err_console.print(f"[yellow]{reason}: running the rotation in this process[/]")
        return None
    return queue_factory(ctx)


def _rotate_queued(queue: RotationQueue, cluster: str, names: list[str], *, no_wait: bool,
                   as_json: bool) -> list[RotationRecord]:
    from rotation.core.errors import RotationInProgress
    from rotation.usecases.queue import follow

    ids, refused = [], []
    for name in names:
        try:
            ids.append(queue.submit(cluster, name, trigger=Trigger.CLI, requested_by=whoami()))
        except RotationInProgress as exc:
            refused.append(exc.message)
    for message in refused:
        say((message, "yellow"), err=True)
    if no_wait:
        print(json.dumps({"queued": ids, "refused": refused}) if as_json else "\n".join(ids))
        raise typer.Exit(2 if refused else 0)
    if not as_json and ids:  # every one refused: nothing to follow
        say(f"queued {len(ids)} rotation(s): ", (" ".join(ids), ""), " on ", (queue.ctx.settings.describe_store(), ""),
            "; following (Ctrl-C stops following)", err=True)
    from rotation.cli.progress import LiveProgress

    _long_work()
    with LiveProgress("rotating", unit="ended", enabled=not as_json and len(ids) > 1) as progress:
        records = follow(queue.ctx.state, queue, ids, None if as_json else _print_step, clock=queue.ctx.clock,
                         progress=progress, on_unstarted=lambda waiting: _no_worker(queue, waiting))
    for record in records:
        if record.waits_for_issuer:  # followed no further (up to 40 min of retries): said, exit 2
            say((f"{record.cluster}/{record.cert_name}: still queued; a worker tries it again when its issuer "
                 "has room (`rotation history`)", "yellow"), err=True, soft_wrap=True)
    if refused:
        now = queue.ctx.clock.now()
        records += [RotationRecord(id="-", cluster=cluster, cert_name="?", trigger="cli", started_at=now,
                                   outcome=Outcome.REFUSED, error=m) for m in refused]
    return records


def _no_worker(queue: RotationQueue, waiting: list[str]) -> None:
    """Said once while following: the queued rotations nobody has started (stderr, also under --json)."""
    from rotation.usecases.queue import UNSTARTED_NOTICE

    say((f"warning: no worker has started rotation(s) {' '.join(waiting)} after {UNSTARTED_NOTICE:g}s: is "
         f"`rotation worker` running on {queue.ctx.settings.describe_store()}? Still waiting (up to 30 min); "
         "Ctrl-C stops following, the rotation stays queued for a worker", "yellow"), err=True, soft_wrap=True)


def _long_work() -> None:
    """Rotating or following can take minutes: the garbage collector, off for a short command's start-up
    (workers/main.py), runs from here on. What start-up loaded is frozen first, so collections skip it."""
    import gc

    gc.freeze()
    gc.enable()


__all__ = ["exit_code_for", "print_records", "queue_factory", "rotate"]
