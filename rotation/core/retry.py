"""The one retry policy: what is retried, how long to wait, how many times, and the retry ids.

Only the task layer retries a rotation (``workers.tasks``): a failure the error tree calls
retryable (``RotationError.retryable``: a cluster or CA unreachable, 5xx, rate limits, a shared lock
held, the issuer's budget spent: ``BudgetSpent``) that
left nothing half-done is tried again under ``<id>.<n>``, at most ``MAX_ROTATION_RETRIES``
times, after an exponential, jittered wait that honours a ``Retry-After``. A final failure
backs the certificate off (``backoff_delay``): the scans skip it until then.

Inside one rotation, the push loop handles only RS's documented transient answers to a
certificate PUT (409 "partially applied", 5xx, a timeout or reset: ``ClusterUnavailable``),
with its own small bounded loop (``PUSH_ATTEMPTS``, ``push_delay``).

Pure: randomness is a parameter (``uniform``), nothing here sleeps or reads the clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta

from rotation.core.errors import ClusterAPIError, RotationError
from rotation.core.model import Outcome, RotationRecord

Uniform = Callable[[float, float], float]

MAX_ROTATION_RETRIES = 4  # task retries of one rotation after its first try
SCAN_RETRIES = 3  # task retries of a scan that could not reach its cluster
PUSH_ATTEMPTS = 3  # PUTs of one certificate while RS answers "try again"
PUSH_BACKOFF = 0.5  # seconds before the second PUT; doubles each time
VERIFY_DELAY = 0.05  # seconds before a lagging endpoint is looked at again after a push; doubles each time
MAX_RETRY_AFTER = 100 * 365 * 24 * 3600.0  # beyond any real wait; now + it is still a date (year 9999 is the last)


def retryable(exc: BaseException) -> bool:
    """Whether trying again later may help: the error type says so, never its text."""
    return isinstance(exc, RotationError) and exc.retryable


def transient_push_answer(exc: ClusterAPIError) -> bool:
    """RS's documented "try again" to a certificate PUT: 409, 5xx, a timeout or a reset."""
    return exc.retryable


def push_delay(attempt: int, backoff: float = PUSH_BACKOFF) -> float:
    """Seconds to wait after push attempt ``attempt`` (1-based) failed with a transient answer."""
    return backoff * 2 ** (attempt - 1)


def verify_delay(attempt: int, first: float = VERIFY_DELAY, cap: float = 0.5) -> float:
    """Seconds before verification look ``attempt + 1`` (1-based ``attempt``: the looks that found an
    endpoint lagging): ``first``, doubling, never more than ``cap``. RS usually serves a new certificate
    within tens of milliseconds; a node that takes seconds is looked at every ``cap`` seconds."""
    return min(cap, first * 2 ** (attempt - 1))


def should_retry(record: RotationRecord, retries: int) -> bool:
    """Retry only transient failures where nothing was left half-done, and only a few times."""
    return (record.outcome in (Outcome.FAILED, Outcome.REFUSED) and record.retryable
            and retries < MAX_ROTATION_RETRIES)


def rotation_countdown(retries: int, retry_after: float | None = None, uniform: Uniform = random.uniform) -> float:
    """Seconds before retry ``retries + 1``: exponential, capped at 5 minutes, jittered, and never
    shorter than what the CA or the cluster asked for."""
    countdown = min(300.0, 10.0 * 2**retries) * uniform(0.5, 1.0)
    return max(countdown, retry_after or 0.0)


def scan_countdown(retries: int) -> float:
    """Seconds before a scan's retry ``retries + 1`` (its cluster was unreachable)."""
    return float(min(60, 5 * 2**retries))


def lease_wait(lock_lease: timedelta) -> float:
    """A redelivered rotation whose own earlier delivery still holds the lock waits for its lease."""
    return lock_lease.total_seconds()


def backoff_delay(failures: int, base: timedelta, maximum: timedelta, retry_after: float | None = None,
                  uniform: Uniform = random.uniform) -> timedelta:
    """Per-certificate backoff after ``failures`` final failures: doubling from ``base``, capped at
    ``maximum``, jittered by ±20 %, and never shorter than what the CA or the cluster asked for."""
    # doubled in float seconds: after ~40 failures (a week of a node down) 5m * 2**39 overflows a timedelta
    seconds = min(base.total_seconds() * 2.0 ** min(max(0, failures - 1), 1000), maximum.total_seconds())
    delay = timedelta(seconds=seconds) * uniform(0.8, 1.2)
    if retry_after:
        delay = max(delay, timedelta(seconds=retry_after))
    return delay


# --- rotation ids: ``<root>`` for the first try, ``<root>.<n>`` for retry n ---------------------
def retry_id(rotation_id: str, retries: int) -> str:
    """The id of the retry that follows a try that had ``retries`` retries before it."""
    return f"{root_id(rotation_id)}.{retries + 1}"


def root_id(rotation_id: str) -> str:
    """The id of the first try of the rotation ``rotation_id`` belongs to."""
    return rotation_id.split(".", 1)[0]


def same_rotation(one: str, other: str) -> bool:
    """Whether two ids are tries of the same rotation."""
    return root_id(one) == root_id(other)


__all__ = ["MAX_ROTATION_RETRIES", "PUSH_ATTEMPTS", "PUSH_BACKOFF", "SCAN_RETRIES", "VERIFY_DELAY", "backoff_delay",
           "lease_wait", "push_delay", "retry_id", "retryable", "root_id", "rotation_countdown", "same_rotation",
           "scan_countdown", "should_retry", "transient_push_answer", "verify_delay"]
