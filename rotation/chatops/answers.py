"""What the chat user reads: message texts and Block Kit payloads. No I/O.

Every answer carries a plain ``text`` (the notification fallback, and all Mattermost and
generic callers read); Slack also gets ``blocks`` where buttons are needed. Anything echoed
from the user has been through the grammar, so it is a known name, not free text; errors and
reasons that came from a cluster or a CA, and who asked (a caller's team is its own to name), go
through ``display_text.chat`` (no mention, no link).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from rotation.chatops.grammar import USAGE, Rotate
from rotation.core.certs import short_fingerprint
from rotation.core.durations import format_duration
from rotation.core.model import Outcome, RotationRecord, Step
from rotation.core.text import chat, days_text

CONFIRM_ACTION = "rotation_confirm"
CANCEL_ACTION = "rotation_cancel"
MAX_LINES = 40


@dataclass(frozen=True)
class Answer:
    text: str
    blocks: tuple[dict[str, Any], ...] | None = None
    in_channel: bool = False  # visible to the channel (rotations) or only to the caller

    def to_json(self, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"response_type": "in_channel" if self.in_channel else "ephemeral",
                                "text": self.text}
        if self.blocks:
            body["blocks"] = list(self.blocks)
        body.update(extra)
        return body


def _fp(value: str | None) -> str:
    return short_fingerprint(value) if value else "-"


def _clip(lines: Sequence[str]) -> str:
    if len(lines) > MAX_LINES:
        lines = [*lines[:MAX_LINES], f"… and {len(lines) - MAX_LINES} more"]
    return "\n".join(lines)


def help_answer() -> Answer:
    return Answer("Commands:\n" + USAGE)


def usage_answer(message: str) -> Answer:
    return Answer(message)


def refused(reason: str) -> Answer:
    return Answer(f":no_entry: Refused: {reason}")


def queued(command: Rotate, ids: Sequence[tuple[str, str]], busy: Sequence[str], requested_by: str,
           follows_here: bool = True) -> Answer:
    """``follows_here``: the request came with a reply URL, so progress and the result are posted to it;
    without one the answer says where to look instead."""
    lines = []
    if ids:
        what = "Dry run" if command.dry_run else "Rotation"
        certs = ", ".join(cert for cert, _ in ids)
        where = ("progress and the result follow here" if follows_here else
                 "no reply URL came with this request, so nothing more is posted here: see `history "
                 f"{command.cluster}` here, or `rotation history --id {ids[0][1]}`")
        lines.append(f"{what} of {certs} on {command.cluster} queued as {', '.join(i for _, i in ids)} "
                     f"(requested by {chat(requested_by)}); {where}.")
    lines.extend(f":hourglass: {message}" for message in busy)
    return Answer("\n".join(lines) or "nothing queued", in_channel=bool(ids))


def confirm_prompt(command: Rotate, certs: Sequence[str], nonce: str, ttl: timedelta, why: str) -> Answer:
    summary = (f"Rotate {', '.join(certs)} on *{command.cluster}*{' (dry run)' if command.dry_run else ''}? "
               f"{why}. This pushes new certificates to every node. The button is yours only and works once, "
               f"for {format_duration(ttl)}.")
    text = summary + f"\nTo confirm without the button: `confirm {nonce}`"
    blocks = (
        {"type": "section", "text": {"type": "mrkdwn", "text": summary}},
        {"type": "actions", "block_id": "rotation_confirmation", "elements": [
            {"type": "button", "action_id": CONFIRM_ACTION, "style": "danger", "value": nonce,
             "text": {"type": "plain_text", "text": "Rotate now"},
             "confirm": {"title": {"type": "plain_text", "text": "Rotate certificates?"},
                         "text": {"type": "mrkdwn", "text": f"{', '.join(certs)} on {command.cluster}"[:300]},
                         "confirm": {"type": "plain_text", "text": "Rotate"},
                         "deny": {"type": "plain_text", "text": "Not now"}, "style": "danger"}},
            {"type": "button", "action_id": CANCEL_ACTION, "value": nonce,
             "text": {"type": "plain_text", "text": "Cancel"}},
        ]},
    )
    return Answer(text, blocks)


def cancelled() -> Answer:
    return Answer("Cancelled: nothing was queued.")


def status_answer(rows: Iterable[dict[str, Any]], in_flight: Iterable[dict[str, Any]], clusters: Sequence[str]
                  ) -> Answer:
    lines = []
    for row in rows:
        last = f", last rotation {row['last_outcome']} {row['last_rotation']}" if row.get("last_rotation") else ""
        failing = f", {row['failures']} failure(s), next attempt {row['next_attempt']}" if row.get("failures") else ""
        lines.append(f"{row['cluster']}/{row['cert']}: {row['health']} {chat(row.get('reason') or '')}".rstrip()
                     + f", {days_text(row['days_left'])} days left{last}{failing}")
    lines.extend(f":arrows_counterclockwise: {f['cluster']}/{f['cert']} rotation {f['rotation_id']} in flight"
                 for f in in_flight)
    if not lines:
        lines.append(f"No state recorded yet for {', '.join(clusters) or 'any cluster you may read'} "
                     "(the service fills it on its next scan).")
    return Answer(_clip(lines))


def history_answer(cluster: str, records: Sequence[RotationRecord]) -> Answer:
    if not records:
        return Answer(f"No rotations recorded for {cluster}.")
    return Answer(_clip([_history_line(r) for r in records]))


def _history_line(r: RotationRecord) -> str:
    who = f"({r.trigger}" + (f", {chat(r.requested_by)}" if r.requested_by else "") + ")"
    if r.policy is not None:  # a `policy apply`: its own word for the outcome, and each field from what to what
        changes = "; ".join(r.policy_changes(lambda text: chat(text[:200]), "→"))  # a cipher list runs long
        return (f"{r.started_at:%Y-%m-%d %H:%M}Z {r.cluster} TLS policy {chat(str(r.policy.get('status', r.outcome)))}"
                f" {r.id} {who}" + (f": {changes}" if changes else "")
                + (f" ({chat(r.error[:120])})" if r.error else ""))
    return (f"{r.started_at:%Y-%m-%d %H:%M}Z {r.cluster}/{r.cert_name} {r.outcome} {r.id} {who}"
            + (f" {_fp(r.old_fingerprint)} → {_fp(r.new_fingerprint)}" if r.new_fingerprint else "")
            + (f": {chat(r.error[:120])}" if r.error else ""))


def check_queued(cluster: str, task_id: str, follows_here: bool = True) -> Answer:
    where = ("the result follows here" if follows_here else "no reply URL came with this request, so the result "
             f"is not posted here: `status` here, or `rotation check --cluster {cluster}`")
    return Answer(f"Checking {cluster} now (task {task_id}); {where}.")


def check_result(cluster: str, rows: Sequence[dict[str, Any]], errors: Sequence[str]) -> Answer:
    lines = [f"Check of {cluster}:"]
    # Names, nodes and addresses are the cluster's answer too (a certificate it lists, a node's address).
    lines.extend(f"{chat(r['cert'])} node {chat(r['node'])} {chat(r['endpoint'])}: {_fp(r['fingerprint'])} "
                 f"{days_text(r['days_left'])} days left, {r['status']} {chat(r['reason'] or '')}".rstrip()
                 for r in rows)
    lines.extend(f":x: {chat(e)}" for e in errors)
    return Answer(_clip(lines))


def progress(record: RotationRecord, step: Step) -> Answer:
    if step.name == "push" and step.finished_at is None:
        return Answer(f":arrows_counterclockwise: {record.cluster}/{record.cert_name}: validated "
                      f"{_fp(record.new_fingerprint)}, pushing it and verifying every node (rotation {record.id})",
                      in_channel=True)
    return Answer(f"{record.cluster}/{record.cert_name}: {step.name} "
                  f"{'started' if step.finished_at is None else ('ok' if step.ok else 'failed')}"
                  + (f" ({chat(step.detail)})" if step.detail else ""), in_channel=True)


def waiting(record: RotationRecord) -> Answer:
    """A queued rotation that found no order for it at its issuer: retried, said once."""
    return Answer(f":hourglass: {record.cluster}/{record.cert_name}: {chat((record.error or '')[:500])} "
                  f"(rotation {record.id})", in_channel=True)


_ICONS = {Outcome.VERIFIED: ":white_check_mark:", Outcome.DRY_RUN: ":mag:", Outcome.ROLLED_BACK: ":rewind:",
          Outcome.FAILED: ":x:", Outcome.REFUSED: ":no_entry:"}


def rotation_result(record: RotationRecord) -> Answer:
    """Old → new fingerprint per node, or the error and what the rollback did."""
    icon = _ICONS.get(record.outcome, "")
    lines = [f"{icon} {record.cluster}/{record.cert_name}: {record.outcome} (rotation {record.id}, "
             f"{record.trigger}{', ' + chat(record.requested_by) if record.requested_by else ''})".strip()]
    if record.error:
        lines.append(f"error: {chat(record.error[:500])}")
    rollback = next((s for s in reversed(record.steps) if s.name in ("verify-rollback", "rollback")), None)
    if rollback is not None:
        lines.append(f"rollback: {'ok' if rollback.ok else 'FAILED'} {chat(rollback.detail or '')}".rstrip())
    for label, pair in record.nodes.items():
        lines.append(f"{label}: {_fp(pair.get('before'))} → {_fp(pair.get('after'))}")
    if record.outcome is Outcome.DRY_RUN and record.new_fingerprint:
        lines.append(f"would install {_fp(record.new_fingerprint)} valid until {record.new_not_after}")
    return Answer(_clip(lines), in_channel=True)


def results(records: Sequence[RotationRecord]) -> Answer:
    answers = [rotation_result(r) for r in records]
    return Answer("\n\n".join(a.text for a in answers), in_channel=True)


__all__ = ["Answer", "CANCEL_ACTION", "CONFIRM_ACTION", "cancelled", "check_queued", "check_result",
           "confirm_prompt", "help_answer", "history_answer", "progress", "queued", "refused", "results",
           "rotation_result", "status_answer", "usage_answer", "waiting"]
