""""Is it due?": one pure decision per certificate, from what is served, its renewal window (with the
CA's ARI window), its backoff and the clock (a parameter: nothing here reads it, nothing does I/O).

``judge`` says what the endpoints serve (ok, due, mismatch, unreachable: `rotation check`);
``decide`` says whether to rotate now (beat's scans).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from rotation.core.durations import RenewBefore, format_duration
from rotation.core.model import ServedCert


class Health(enum.StrEnum):
    OK = "ok"
    DUE = "due"
    MISMATCH = "mismatch"
    UNREACHABLE = "unreachable"

    @property
    def severity(self) -> int:
        return {Health.OK: 0, Health.DUE: 1, Health.MISMATCH: 1, Health.UNREACHABLE: 2}[self]


@dataclass(frozen=True)
class Verdict:
    health: Health
    reason: str
    fingerprints: tuple[str, ...] = ()
    not_after: datetime | None = None


# A certificate the last rotation installed, due as soon as issued because renew_before is not shorter than
# its lifetime (a CA now issuing 45 days while renew_before says 60d), is renewed with this share of its life
# left instead: renewing it at every scan would only get another one like it (as ACME clients do: at 2/3)
TOO_LONG_SHARE = 1 / 3
# "as soon as issued": within this of its notBefore (a CA backdates it, Let's Encrypt by an hour; then a scan)
AT_ONCE = timedelta(hours=2)


def _lifetime(not_before: datetime | None, not_after: datetime) -> timedelta:
    return (not_after - not_before) if not_before else timedelta(days=90)


def renewal_threshold(renew_before: RenewBefore, not_before: datetime | None, not_after: datetime) -> timedelta:
    return renew_before.threshold(_lifetime(not_before, not_after))


def _too_long(renew_before: RenewBefore, not_before: datetime | None, not_after: datetime) -> str:
    """What `check`, `status` and the scan add to their reason when renew_before is not shorter than the
    certificate's lifetime ("" otherwise): every renewal would be due as soon as issued."""
    lifetime = _lifetime(not_before, not_after)
    if renew_before.threshold(lifetime) < lifetime - AT_ONCE:
        return ""
    return (f"; renew_before {renew_before} is not shorter than its lifetime ({format_duration(_round(lifetime))}) "
            f"by more than {format_duration(AT_ONCE)}: a renewal as short would be due as soon as issued")


def due_reason(
    not_after: datetime, now: datetime, renew_before: RenewBefore, not_before: datetime | None = None
) -> str | None:
    """Why a certificate with this validity is due now, or None when it is not."""
    left = not_after - now
    if left <= timedelta(0):
        return f"expired {format_duration(-left)} ago" if -left >= timedelta(seconds=1) else "expired"
    if not_before is not None and not_before > now:  # every client refuses it (as validation does before a push)
        return f"not valid until {not_before:%Y-%m-%d %H:%M}Z"
    threshold = renewal_threshold(renew_before, not_before, not_after)
    if left <= threshold:
        return (f"expires in {format_duration(_round(left))} (renew_before {renew_before})"
                + _too_long(renew_before, not_before, not_after))
    return None


def _round(value: timedelta) -> timedelta:
    unit = timedelta(hours=1) if value >= timedelta(hours=1) else timedelta(seconds=1)
    return unit * max(1, round(value / unit))


def judge(
    served: Sequence[ServedCert],
    now: datetime,
    renew_before: RenewBefore,
) -> Verdict:
    """One verdict for one certificate across all its endpoints."""
    failed = [s for s in served if not s.ok]
    fingerprints = tuple(sorted({s.fingerprint for s in served if s.fingerprint}))
    if failed:
        where = ", ".join(f"node {s.endpoint.node} ({s.error})" for s in failed[:3])
        return Verdict(Health.UNREACHABLE, f"{len(failed)} endpoint(s) unreachable: {where}", fingerprints)
    if not served:
        return Verdict(Health.UNREACHABLE, "no endpoint presents this certificate")
    if len(fingerprints) > 1:
        return Verdict(Health.MISMATCH, f"{len(fingerprints)} different certificates served across nodes",
                       fingerprints, min(s.not_after for s in served if s.not_after))
    first = min((s for s in served if s.not_after), key=lambda s: s.not_after)  # type: ignore[arg-type,return-value]
    not_after = first.not_after
    assert not_after is not None
    reason = due_reason(not_after, now, renew_before, first.not_before)
    if reason:
        return Verdict(Health.DUE, reason, fingerprints, not_after)
    return Verdict(Health.OK, f"expires in {format_duration(_round(not_after - now))}"
                   + _too_long(renew_before, first.not_before, not_after), fingerprints, not_after)


@dataclass(frozen=True)
class RenewalWindow:
    """When a certificate should be renewed: ``renew_before`` (the inventory's), and the CA's own
    window when it offers one (ACME Renewal Information, RFC 9773), which wins when it opens first."""

    renew_before: RenewBefore
    ari_due_at: datetime | None = None
    installed: str | None = None  # the fingerprint the last verified rotation installed (the service's state)


# RFC 9773 4.3.3: a client does not ask again before the CA's Retry-After. Bounded: a CA saying "now"
# would be asked at every scan, one saying "in a year" would never move a window it moved.
ARI_RECHECK_MIN = timedelta(minutes=5)
ARI_RECHECK_MAX = timedelta(hours=24)


def ari_recheck_in(retry_after: timedelta | None) -> timedelta:
    """How long to reuse what the CA's renewal information said (or its failure) before asking again."""
    return min(max(retry_after or ARI_RECHECK_MIN, ARI_RECHECK_MIN), ARI_RECHECK_MAX)


@dataclass(frozen=True)
class Decision:
    """Whether to rotate a certificate now, and why."""

    verdict: Verdict  # what is served: health, reason, fingerprints, the earliest notAfter
    due: bool  # rotate it now
    backing_off: bool = False  # it would be due, but failed before: it waits until ``next_attempt``
    reason: str = ""

    @property
    def health(self) -> Health:
        return self.verdict.health


def backoff_holds(next_attempt: datetime | None, not_after: datetime | None, now: datetime) -> bool:
    """Whether a backoff after failures still holds a certificate back (what `decide`, `status` and the metrics
    say): its next attempt is ahead, and before the certificate expires (one outlasting it would let it expire
    unrotated: it is tried at every scan instead)."""
    return next_attempt is not None and next_attempt > now and (not_after is None or next_attempt < not_after)


def decide(served: Sequence[ServedCert], window: RenewalWindow, now: datetime,
           next_attempt: datetime | None = None) -> Decision:
    """"Is it due": one certificate across all its endpoints. Due when inside ``renew_before``, expired, not
    valid yet, served differently across nodes, or inside the CA's renewal window; not while it backs off after
    final failures (``next_attempt`` still ahead, unless the certificate would expire first). The certificate
    the last rotation installed is not due again at once when renew_before is not shorter than its lifetime.
    Unreachable endpoints are never due: nothing could be verified there."""
    verdict = judge(served, now, window.renew_before)
    reason = verdict.reason
    wanted = verdict.health in (Health.DUE, Health.MISMATCH)
    too_soon = _renewed_too_soon(served, window, verdict, now)
    if too_soon is not None:
        wanted, reason = too_soon
    # a window opening before the served certificate was issued cannot be about it: followed, it would rotate
    # every fresh certificate again at each scan (renew_before still decides)
    issued = max((s.not_before for s in served if s.not_before), default=None)
    if (not wanted and verdict.health in (Health.OK, Health.DUE) and window.ari_due_at is not None
            and window.ari_due_at <= now and (issued is None or window.ari_due_at >= issued)):
        wanted, reason = True, f"the CA's renewal window opened {window.ari_due_at:%Y-%m-%d %H:%M}Z (ARI)"
    if not wanted:
        return Decision(verdict, due=False, reason=reason)
    if next_attempt is not None and next_attempt > now and not backoff_holds(next_attempt, verdict.not_after, now):
        return Decision(verdict, due=True, reason=f"{reason}; its backoff until {next_attempt:%Y-%m-%d %H:%M}Z "
                                                  "would outlast it: tried at every scan until it is renewed")
    if backoff_holds(next_attempt, verdict.not_after, now):
        assert next_attempt is not None
        return Decision(verdict, due=False, backing_off=True,
                        reason=f"{reason}; backing off after failures until {next_attempt:%Y-%m-%d %H:%M}Z")
    return Decision(verdict, due=True, reason=reason)


def _renewed_too_soon(served: Sequence[ServedCert], window: RenewalWindow, verdict: Verdict,
                      now: datetime) -> tuple[bool, str] | None:
    """For the certificate the last rotation installed, due only because renew_before is not shorter than its
    lifetime: whether it is due with ``TOO_LONG_SHARE`` of its life left, and why (None: not that case)."""
    if (verdict.health is not Health.DUE or window.installed is None or verdict.fingerprints != (window.installed,)
            or verdict.not_after is None or verdict.not_after <= now):
        return None
    not_before = min((s.not_before for s in served if s.not_before), default=None)
    if not_before is None or not_before > now or not _too_long(window.renew_before, not_before, verdict.not_after):
        return None
    lifetime = verdict.not_after - not_before
    left = verdict.not_after - now
    why = (f"expires in {format_duration(_round(left))}; the last rotation installed it, and renew_before "
           f"{window.renew_before} is not shorter than its lifetime ({format_duration(_round(lifetime))}) by more "
           f"than {format_duration(AT_ONCE)}: renewed "
           "with a third of it left rather than at every scan, lower renew_before")
    return left <= lifetime * TOO_LONG_SHARE, why


__all__ = ["ARI_RECHECK_MAX", "ARI_RECHECK_MIN", "Decision", "Health", "RenewalWindow", "Verdict",
           "ari_recheck_in", "backoff_holds", "decide", "due_reason", "judge", "renewal_threshold"]
