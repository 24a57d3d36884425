"""The one retry policy (``rotation.core.retry``): pure, randomness injected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rotation.core import retry
from rotation.core.errors import ClusterRejected, ClusterUnavailable, IssuerError, ValidationError
from rotation.core.model import Outcome, RotationRecord


def lowest(low: float, high: float) -> float:
    return low


def highest(low: float, high: float) -> float:
    return high


def record(outcome: Outcome, retryable: bool) -> RotationRecord:
    return RotationRecord(id="abc", cluster="east", cert_name="cm", trigger="beat",
                          started_at=datetime(2026, 1, 1, tzinfo=UTC), outcome=outcome, retryable=retryable)


def test_retry_ids_are_minted_and_read_back_in_one_format() -> None:
    first = "0123abcd4567"
    second = retry.retry_id(first, 0)
    third = retry.retry_id(second, 1)
    assert (second, third) == ("0123abcd4567.1", "0123abcd4567.2")
    assert retry.root_id(third) == first and retry.same_rotation(first, third)
    assert not retry.same_rotation(first, "89abcdef0123.1")


def test_only_transient_failures_that_left_nothing_half_done_are_retried_a_few_times() -> None:
    assert retry.should_retry(record(Outcome.FAILED, True), 0)
    assert retry.should_retry(record(Outcome.REFUSED, True), retry.MAX_ROTATION_RETRIES - 1)
    assert not retry.should_retry(record(Outcome.REFUSED, True), retry.MAX_ROTATION_RETRIES)
    assert not retry.should_retry(record(Outcome.FAILED, False), 0)
    assert not retry.should_retry(record(Outcome.ROLLED_BACK, True), 0)  # it pushed: the next scan decides
    assert retry.retryable(ClusterUnavailable("503")) and retry.retryable(IssuerError("rate", retryable=True))
    assert not retry.retryable(ClusterRejected("400")) and not retry.retryable(ValidationError(["bad"]))
    assert not retry.retryable(ValueError("a bug"))


@pytest.mark.parametrize(("retries", "low", "high"), [(0, 5.0, 10.0), (1, 10.0, 20.0), (6, 150.0, 300.0)])
def test_task_countdowns_grow_are_capped_jittered_and_honour_retry_after(retries: int, low: float,
                                                                         high: float) -> None:
    assert retry.rotation_countdown(retries, uniform=lowest) == low
    assert retry.rotation_countdown(retries, uniform=highest) == high
    assert retry.rotation_countdown(retries, retry_after=3600, uniform=highest) == 3600
    assert [retry.scan_countdown(n) for n in range(6)] == [5, 10, 20, 40, 60, 60]
    assert retry.lease_wait(timedelta(seconds=30)) == 30


def test_backoff_after_final_failures_doubles_to_its_cap_and_never_undercuts_retry_after() -> None:
    base, cap = timedelta(minutes=5), timedelta(hours=6)
    assert [retry.backoff_delay(n, base, cap, uniform=highest) / 1.2 for n in (1, 2, 3)] == [
        timedelta(minutes=5), timedelta(minutes=10), timedelta(minutes=20)]
    assert retry.backoff_delay(30, base, cap, uniform=lowest) == cap * 0.8
    assert retry.backoff_delay(1, base, cap, retry_after=7200, uniform=lowest) == timedelta(hours=2)


def test_the_push_loop_waits_double_each_time_and_only_for_rs_transient_answers() -> None:
    assert [retry.push_delay(n) for n in (1, 2, 3)] == [retry.PUSH_BACKOFF, retry.PUSH_BACKOFF * 2,
                                                        retry.PUSH_BACKOFF * 4]
    assert retry.transient_push_answer(ClusterUnavailable("409 partially applied", status=409))
    assert not retry.transient_push_answer(ClusterRejected("400 invalid certificate", status=400))


def test_verification_looks_again_after_50ms_doubling_up_to_the_cap() -> None:
    assert [retry.verify_delay(n) for n in range(1, 7)] == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]
    assert [retry.verify_delay(n, 0.1, 0.3) for n in (1, 2, 3)] == [0.1, 0.2, 0.3]
