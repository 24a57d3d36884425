""""Is it due": one pure decision from what is served, the renewal window (with ARI), backoff and the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
