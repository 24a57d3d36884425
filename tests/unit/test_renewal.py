""""Is it due": one pure decision from what is served, the renewal window (with ARI), backoff and the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rotation.core.durations import RenewBefore
from rotation.core.model import CertName, Endpoint, ServedCert
from rotation.core.renewal import Health, RenewalWindow, decide

NOW = datetime(2026, 3, 1, tzinfo=UTC)
WINDOW = RenewalWindow(RenewBefore.parse("30d"))


def served(days_left: float, fingerprint: str = "aa", node: str = "1", error: str | None = None) -> ServedCert:
    endpoint = Endpoint("east", CertName.CM, node, f"127.0.0.{node}", 8443)
    if error:
        return ServedCert(endpoint, error=error)
    return ServedCert(endpoint, fingerprint=fingerprint, not_before=NOW - timedelta(days=60),
                      not_after=NOW + timedelta(days=days_left))


def test_inside_renew_before_expired_or_mismatched_is_due() -> None:
    assert decide([served(45), served(45, node="2")], WINDOW, NOW).due is False
    due = decide([served(10)], WINDOW, NOW)
    assert due.due and due.health is Health.DUE and due.reason == "expires in 10d (renew_before 30d)"
    assert decide([served(-1)], WINDOW, NOW).reason == "expired 1d ago"
    assert decide([served(0)], WINDOW, NOW).reason == "expired"  # notAfter exactly now: no longer valid
    mixed = decide([served(45), served(45, "bb", node="2")], WINDOW, NOW)
    assert mixed.due and mixed.health is Health.MISMATCH
    half = RenewalWindow(RenewBefore.parse("50%"))  # issued 60 days ago: due once 60 days or fewer are left
    assert decide([served(59)], half, NOW).due and not decide([served(61)], half, NOW).due


def test_unreachable_endpoints_are_never_due() -> None:
    decision = decide([served(1), served(0, node="2", error="timed out after 2s")], WINDOW, NOW)
    assert decision.health is Health.UNREACHABLE and not decision.due and not decision.backing_off


def test_the_cas_renewal_window_wins_when_it_opens_first() -> None:
    opened = RenewalWindow(WINDOW.renew_before, ari_due_at=NOW - timedelta(hours=1))
    decision = decide([served(45)], opened, NOW)
    assert decision.due and decision.health is Health.OK and "(ARI)" in decision.reason
    later = RenewalWindow(WINDOW.renew_before, ari_due_at=NOW + timedelta(days=3))
    assert not decide([served(45)], later, NOW).due
    assert decide([served(10)], later, NOW).due  # renew_before still applies


def test_a_certificate_backing_off_waits_for_its_next_attempt() -> None:
    waiting = decide([served(10)], WINDOW, NOW, next_attempt=NOW + timedelta(minutes=5))
    assert not waiting.due and waiting.backing_off and "backing off after failures until" in waiting.reason
    assert decide([served(10)], WINDOW, NOW + timedelta(minutes=6), next_attempt=NOW + timedelta(minutes=5)).due
    assert not decide([served(45)], WINDOW, NOW, next_attempt=NOW + timedelta(minutes=5)).backing_off


def issued(lifetime: timedelta, at: datetime, fingerprint: str = "aa", node: str = "1") -> ServedCert:
    """A certificate issued at ``at`` (notBefore backdated 5 minutes, as the internal CA does)."""
    endpoint = Endpoint("east", CertName.CM, node, f"127.0.0.{node}", 8443)
    return ServedCert(endpoint, fingerprint=fingerprint, not_before=at - timedelta(minutes=5),
                      not_after=at - timedelta(minutes=5) + lifetime)


LIFETIMES = [timedelta(hours=160), timedelta(days=45), timedelta(days=47), timedelta(days=90),
             timedelta(days=100), timedelta(days=200), timedelta(days=398), timedelta(days=825)]
RENEW_BEFORE = ["30d", "60d", "21d", "12h", "33%", "50%", "1%", "99.9%"]


@pytest.mark.parametrize("lifetime", LIFETIMES, ids=lambda v: f"{v.days}d{v.seconds // 3600}h")
@pytest.mark.parametrize("renew_before", RENEW_BEFORE)
def test_every_lifetime_is_renewed_once_before_expiry_never_at_every_scan(lifetime: timedelta,
                                                                          renew_before: str) -> None:
    """Hourly scans over the life of a certificate a rotation just installed: it is not due at once (or every
    scan rotates it again, e.g. a CA now issuing 45 days while renew_before says 60d), and it becomes due
    before it expires."""
    window = RenewalWindow(RenewBefore.parse(renew_before), installed="aa")
    cert = issued(lifetime, NOW)
    assert not decide([cert], window, NOW).due, decide([cert], window, NOW).reason
    assert not decide([cert], window, NOW + timedelta(hours=1)).due
    moment, first_due, step = NOW, None, max(timedelta(hours=1), lifetime / 2000)
    while moment < cert.not_after:  # type: ignore[operator]
        if decide([cert], window, moment).due:
            first_due = moment
            break
        moment += step
    assert first_due is not None and first_due < cert.not_after  # type: ignore[operator]


def test_renew_before_not_shorter_than_the_lifetime_says_so_instead_of_looping() -> None:
    """A renewal whose CA switched to 45 days while renew_before is 60d: not rotated again at every scan;
    renewed with a third of its life left, and the reason says why (what `check` and `status` show)."""
    window = RenewalWindow(RenewBefore.parse("60d"), installed="aa")
    cert = issued(timedelta(days=45), NOW)
    fresh = decide([cert], window, NOW + timedelta(hours=1))
    assert not fresh.due and "not shorter than its lifetime (45d)" in fresh.reason, fresh.reason
    assert fresh.health is Health.DUE and "not shorter than" in fresh.verdict.reason  # what `check` and `status` say
    late = decide([cert], window, NOW + timedelta(days=31))
    assert late.due and "not shorter than" in late.reason, late.reason
    # one the service did not install (the cluster's first, another PKI's) is due as renew_before says
    assert decide([cert], RenewalWindow(RenewBefore.parse("60d")), NOW + timedelta(hours=1)).due
    assert decide([cert], RenewalWindow(RenewBefore.parse("60d"), installed="bb"), NOW + timedelta(hours=1)).due
    # the CA's renewal window still applies to it
    ari = RenewalWindow(RenewBefore.parse("60d"), ari_due_at=NOW + timedelta(days=20), installed="aa")
    assert decide([cert], ari, NOW + timedelta(days=21)).due


def test_a_backoff_that_would_outlast_the_certificate_does_not_hold_it_back() -> None:
    """Backing off 6 hours with 2 hours left would let it expire unrotated and unsaid: it is tried, and the
    reason says the backoff was cut short."""
    decision = decide([served(2 / 24)], WINDOW, NOW, next_attempt=NOW + timedelta(hours=6))
    assert decision.due and not decision.backing_off, decision.reason
    assert "outlast" in decision.reason, decision.reason
    assert decide([served(10)], WINDOW, NOW, next_attempt=NOW + timedelta(hours=6)).backing_off


def test_an_absurd_renewal_window_is_not_followed() -> None:
    """A window that opened before the certificate was even issued cannot be about it (a fresh certificate
    would be rotated at every scan); one after notAfter changes nothing: renew_before still decides."""
    fresh = issued(timedelta(days=45), NOW)
    before_issue = RenewalWindow(WINDOW.renew_before, ari_due_at=NOW - timedelta(days=3))
    assert not decide([fresh], before_issue, NOW + timedelta(hours=1)).due
    after_expiry = RenewalWindow(WINDOW.renew_before, ari_due_at=NOW + timedelta(days=90))
    assert not decide([fresh], after_expiry, NOW + timedelta(days=1)).due
    assert decide([fresh], after_expiry, NOW + timedelta(days=20)).due  # inside renew_before (30d)
    opened = RenewalWindow(WINDOW.renew_before, ari_due_at=NOW + timedelta(days=2))
    assert decide([fresh], opened, NOW + timedelta(days=2)).due  # a real window still wins
